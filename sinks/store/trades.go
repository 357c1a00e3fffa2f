package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// Trades are kept in a table of their own (clickhouse.trades_table,
// market_trades by default), written by the store's trade writer from the
// trades topic with the guarantees ticks have: the host runs it under its
// own runtime and consumer group (tickflow.store.trades), which commits a
// batch's offsets only after ClickHouse acknowledged its INSERT, and a
// batch written again after a lost commit is invisible: the table is a
// ReplacingMergeTree keyed by (exchange, symbol, timestamp, trade_id), and
// every read groups by (timestamp, trade_id). The trade id is the
// exchange's own, so a trade is one row however often it was delivered;
// the event time in the key keeps a pair's trades in time order on disk,
// which is what the range query reads, and it is the same in every copy.

// tradeDecimals are a trade's decimal fields in column order.
var tradeDecimals = [...]struct {
	name, scale string
	get         func(*tick.Trade) *apd.Decimal
}{
	{"price", "price_scale", func(t *tick.Trade) *apd.Decimal { return &t.Price }},
	{"size", "size_scale", func(t *tick.Trade) *apd.Decimal { return &t.Size }},
}

// tradesDDL is the CREATE TABLE statement of the trades table.
func tradesDDL(table string, f features, retentionDays int) string {
	str := stringType(f)
	intCodec, decCodec := "", ""
	if f.codecs {
		intCodec, decCodec = " CODEC(Delta, ZSTD(1))", " CODEC(ZSTD(1))"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n", table)
	fmt.Fprintf(&b, "    exchange %s,\n    symbol %s,\n    base %s,\n    quote %s,\n", str, str, str, str)
	b.WriteString("    trade_id String,\n")
	fmt.Fprintf(&b, "    side %s,\n", str)                // the taker's: buy or sell
	fmt.Fprintf(&b, "    timestamp Int64%s,\n", intCodec) // exchange trade time, Unix ms
	fmt.Fprintf(&b, "    received_at Int64%s", intCodec)  // tickflow receive time, Unix µs
	for _, d := range tradeDecimals {
		fmt.Fprintf(&b, ",\n    %s %s%s", d.name, decimalType, decCodec)
	}
	for _, d := range tradeDecimals {
		fmt.Fprintf(&b, ",\n    %s %s%s", d.scale, scaleType, decCodec)
	}
	b.WriteString("\n) ENGINE = ReplacingMergeTree\n")
	b.WriteString("PARTITION BY toYYYYMM(toDateTime(intDiv(timestamp, 1000), 'UTC'))\n")
	b.WriteString("ORDER BY (exchange, symbol, timestamp, trade_id)")
	if f.ttl && retentionDays > 0 {
		fmt.Fprintf(&b, "\nTTL toDateTime(intDiv(timestamp, 1000), 'UTC') + INTERVAL %d DAY", retentionDays)
	}
	return b.String()
}

// tradeStrings are the trades table's string columns, in column order.
var tradeStrings = [...]string{"exchange", "symbol", "base", "quote", "trade_id", "side"}

// checkTradesTable verifies the trades table can take the writer's rows
// and keeps duplicates invisible, and returns which string columns are
// LowCardinality.
func checkTradesTable(ctx context.Context, tr transport, database, table string) ([len(tradeStrings)]bool, error) {
	var lowCard [len(tradeStrings)]bool
	if _, err := checkEngine(ctx, tr, database, table); err != nil {
		return lowCard, err
	}
	types, err := columnTypes(ctx, tr, database, table)
	if err != nil {
		return lowCard, err
	}
	var problems []string
	want := func(col string, ok bool, got, expect string) {
		if _, present := types[col]; !present {
			problems = append(problems, fmt.Sprintf("no column %s (want %s)", col, expect))
		} else if !ok {
			problems = append(problems, fmt.Sprintf("column %s is %s, want %s", col, got, expect))
		}
	}
	for i, c := range tradeStrings {
		t := types[c]
		want(c, t == "String" || t == "LowCardinality(String)", t, "String")
		lowCard[i] = t == "LowCardinality(String)"
	}
	for _, c := range []string{"timestamp", "received_at"} {
		want(c, types[c] == "Int64", types[c], "Int64")
	}
	for _, d := range tradeDecimals {
		want(d.name, sameDecimal(types[d.name]), types[d.name], string(decimalType))
		want(d.scale, types[d.scale] == string(scaleType), types[d.scale], string(scaleType))
	}
	if len(problems) > 0 {
		return lowCard, fmt.Errorf("table %s.%s does not match the store's trades schema: %s", database, table, strings.Join(problems, "; "))
	}
	return lowCard, nil
}

// tradeColumns is a batch of trades as ch-go columns, reused.
type tradeColumns struct {
	lowCard    [len(tradeStrings)]bool
	strs       [len(tradeStrings)]proto.ColumnOf[string]
	timestamp  proto.ColInt64
	receivedAt proto.ColInt64
	decimals   [len(tradeDecimals)]proto.ColDecimal128
	scales     [len(tradeDecimals)]proto.ColUInt8
	input      proto.Input
}

func newTradeColumns(lowCard [len(tradeStrings)]bool) *tradeColumns {
	c := &tradeColumns{lowCard: lowCard}
	for i, name := range tradeStrings {
		c.strs[i] = stringColumn(lowCard[i])
		c.input = append(c.input, proto.InputColumn{Name: name, Data: c.strs[i]})
	}
	c.input = append(c.input,
		proto.InputColumn{Name: "timestamp", Data: &c.timestamp},
		proto.InputColumn{Name: "received_at", Data: &c.receivedAt})
	for i, d := range tradeDecimals {
		c.input = append(c.input, proto.InputColumn{Name: d.name, Data: proto.Alias(&c.decimals[i], decimalType)})
	}
	for i, d := range tradeDecimals {
		c.input = append(c.input, proto.InputColumn{Name: d.scale, Data: &c.scales[i]})
	}
	return c
}

// append adds t as a row, or leaves every column untouched and says why
// it does not fit.
func (c *tradeColumns) append(t *tick.Trade) error {
	if err := t.Validate(); err != nil {
		return &fieldError{"trade", err}
	}
	var (
		dec [len(tradeDecimals)]proto.Decimal128
		sc  [len(tradeDecimals)]uint8
	)
	for i, f := range tradeDecimals {
		d := f.get(t)
		v, err := toDecimal128(d)
		if err == nil {
			sc[i], err = scaleOf(d)
		}
		if err != nil {
			return &fieldError{f.name, err}
		}
		dec[i] = v
	}
	for i, v := range [len(tradeStrings)]string{t.Exchange, t.Symbol, t.Base, t.Quote, t.TradeID, string(t.Side)} {
		c.strs[i].Append(v)
	}
	c.timestamp.Append(t.Timestamp)
	c.receivedAt.Append(t.ReceivedAt)
	for i := range dec {
		c.decimals[i].Append(dec[i])
		c.scales[i].Append(sc[i])
	}
	return nil
}

// TradeWriter is the store's sinks.TradeSink: it writes trades into the
// trades table. It shares the sink's History (its transport) and has its
// own schema state, so ticks and trades connect and fail independently.
type TradeWriter struct {
	s     *Sink
	table string // quoted `database`.`table`

	mu        sync.Mutex
	connected bool
	cols      *tradeColumns
}

var (
	_ sinks.TradeSink     = (*TradeWriter)(nil)
	_ sinks.TradeConsumer = (*Sink)(nil)
)

// TradeWriter is the sink's trade writer (one per sink), for the host's
// trades runtime.
func (s *Sink) TradeWriter() sinks.TradeSink {
	s.tradesOnce.Do(func() {
		s.acquire()
		s.trades = &TradeWriter{s: s, table: s.History.tradesTable}
	})
	return s.trades
}

// Connect creates the trades table if missing and checks it.
func (w *TradeWriter) Connect(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.connected = false
	err := w.ensureSchema(ctx)
	w.s.observe(err)
	return err
}

func (w *TradeWriter) ensureSchema(ctx context.Context) error {
	h := w.s.History
	f, err := detectFeatures(ctx, h.tr)
	if err != nil {
		return fmt.Errorf("store trades: %w", err)
	}
	if h.ep.database != "default" {
		if err := h.tr.exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(h.ep.database)); err != nil {
			return fmt.Errorf("store trades: create database: %w", err)
		}
	}
	if err := h.tr.exec(ctx, tradesDDL(w.table, f, h.cfg.RetentionDays)); err != nil {
		return fmt.Errorf("store trades: create table: %w", err)
	}
	lowCard, err := checkTradesTable(ctx, h.tr, h.ep.database, h.cfg.TradesTable)
	if err != nil {
		return fmt.Errorf("store trades: %w", err)
	}
	if w.cols == nil || w.cols.lowCard != lowCard {
		h.log.Info("store trades schema ready", "version", f.version, "table", w.table)
	}
	w.cols = newTradeColumns(lowCard)
	w.connected = true
	return nil
}

// WriteBatch inserts the batch as one block and returns nil only once
// ClickHouse acknowledged it. A trade that is not valid, or whose price or
// size does not fit Decimal(38, 18) exactly, is rejected and counted
// (tickflow_store_trades_rejected_total), never rounded; the rest of the
// batch is written.
func (w *TradeWriter) WriteBatch(ctx context.Context, batch []tick.Trade) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.connected {
		return fmt.Errorf("store trades: %w", sinks.ErrNotConnected)
	}
	c := w.cols
	c.input.Reset()
	rejects := map[string]int{}
	var first error
	for i := range batch {
		t := &batch[i]
		if err := c.append(t); err != nil {
			if first == nil {
				first = fmt.Errorf("%s trade %s: %w", t.Key(), t.TradeID, err)
			}
			rejects[tradeRejectReason(err)]++
		}
	}
	report := func() {
		if first == nil {
			return
		}
		total := 0
		for reason, n := range rejects {
			w.s.m.tradesRejected.WithLabelValues(reason).Add(float64(n))
			total += n
		}
		w.s.log.Warn("trades rejected", "rejected", total, "batch", len(batch), "first", first)
	}
	rows := c.timestamp.Rows()
	if rows == 0 {
		report()
		return nil
	}
	start := time.Now()
	err := w.s.tr.insert(ctx, w.table, c.input)
	w.s.m.insertSeconds.Observe(time.Since(start).Seconds())
	w.s.observe(err)
	if err != nil {
		w.s.m.insertErrors.Inc()
		if isLinkError(err) || isCode(err, codeUnknownTable) || isCode(err, codeUnknownDatabase) {
			w.connected = false
			return fmt.Errorf("store: insert %d trades: %w: %w", rows, sinks.ErrNotConnected, err)
		}
		return fmt.Errorf("store: insert %d trades: %w", rows, err)
	}
	w.s.m.tradeRows.Add(float64(rows))
	report() // once the batch is settled: a retried batch counts its rejects once
	return nil
}

func tradeRejectReason(err error) string {
	if fe, ok := err.(*fieldError); ok && fe.field == "trade" {
		return "invalid"
	}
	return rejectReason(err)
}

// Close releases the History if the sink opened it and the tick side is
// closed too.
func (w *TradeWriter) Close(context.Context) error { return w.s.release() }

// Trades answers a page of one pair's stored trades, newest first (by
// event time, then trade id), each trade once however often it was
// written. From, To and Before bound the event time as for Ticks.
func (h *History) Trades(ctx context.Context, q tick.Query) ([]tick.Trade, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultTickLimit
	}
	limit = min(limit, maxTickLimit)
	where := []string{pairFilter(q.Exchange, q.Symbol)}
	if !q.From.IsZero() {
		where = append(where, "timestamp >= "+strconv.FormatInt(q.From.UnixMilli(), 10))
	}
	if !q.To.IsZero() {
		where = append(where, "timestamp <= "+strconv.FormatInt(q.To.UnixMilli(), 10))
	}
	if q.Before != 0 {
		where = append(where, "timestamp < "+strconv.FormatInt(q.Before, 10))
	}
	// The copies of one trade are identical but for received_at when the
	// exchange delivered it twice; any() takes one copy's.
	cols := []string{"timestamp", "trade_id", "any(received_at) AS _received_at",
		"any(toString(base)) AS _base", "any(toString(quote)) AS _quote", "any(toString(side)) AS _side"}
	for _, d := range tradeDecimals {
		cols = append(cols, "any("+d.name+") AS _"+d.name)
	}
	for _, d := range tradeDecimals {
		cols = append(cols, "any("+d.scale+") AS _"+d.scale)
	}
	sql := "SELECT " + strings.Join(cols, ", ") + " FROM " + h.tradesTable +
		" WHERE " + strings.Join(where, " AND ") +
		" GROUP BY timestamp, trade_id" +
		" ORDER BY timestamp DESC, trade_id DESC LIMIT " + strconv.Itoa(limit)
	var (
		ts, recv              proto.ColInt64
		id, base, quote, side proto.ColStr
		decs                  [len(tradeDecimals)]proto.ColDecimal128
		scales                [len(tradeDecimals)]proto.ColUInt8
		res                   = proto.Results{{Data: &ts}, {Data: &id}, {Data: &recv}, {Data: &base}, {Data: &quote}, {Data: &side}}
		out                   = make([]tick.Trade, 0, min(limit, 256))
	)
	for i := range decs {
		res = append(res, proto.ResultColumn{Data: proto.Alias(&decs[i], decimalType)})
	}
	for i := range scales {
		res = append(res, proto.ResultColumn{Data: &scales[i]})
	}
	if err := h.tr.query(ctx, sql, res, func() error {
		for i := 0; i < ts.Rows(); i++ {
			out = append(out, tick.Trade{Exchange: q.Exchange, Symbol: q.Symbol, Base: base.Row(i), Quote: quote.Row(i),
				Side: tick.Side(side.Row(i)), TradeID: id.Row(i), Timestamp: ts.Row(i), ReceivedAt: recv.Row(i)})
			t := &out[len(out)-1]
			for j, d := range tradeDecimals {
				fromDecimal128(d.get(t), decs[j].Row(i), scales[j].Row(i))
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: trades: %w", err)
	}
	return out, nil
}
