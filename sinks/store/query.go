package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/tickflow/tickflow/tick"
)

// Limits on what one API query may ask of ClickHouse.
const (
	defaultTickLimit = 1000
	maxTickLimit     = 10000
	// MaxCandles bounds the buckets one candle query may span.
	MaxCandles = 10000
)

// pairFilter is the WHERE clause for one pair. Every read filters on the
// primary key's prefix, so ClickHouse reads only that pair's granules.
func pairFilter(exchange, symbol string) string {
	return "exchange = " + quoteString(exchange) + " AND symbol = " + quoteString(symbol)
}

// LatestTick is the pair's newest tick by event time (receive time breaking
// ties). A replayed copy is identical, so it needs no deduplication.
func (h *History) LatestTick(ctx context.Context, exchange, symbol string) (tick.Tick, bool, error) {
	sql := "SELECT " + tickSelectList(false) + " FROM " + h.table +
		" WHERE " + pairFilter(exchange, symbol) +
		" ORDER BY timestamp DESC, received_at DESC LIMIT 1"
	var r tickResult
	var out []tick.Tick
	p := tick.Pair{Exchange: exchange, Symbol: symbol}
	if err := h.tr.query(ctx, sql, r.results(), func() error {
		out = r.appendTo(out, p)
		return nil
	}); err != nil {
		return tick.Tick{}, false, fmt.Errorf("store: latest tick: %w", err)
	}
	if len(out) == 0 {
		return tick.Tick{}, false, nil
	}
	return out[0], true, nil
}

// Ticks answers a page of one pair's ticks, newest first, each tick once
// however often a replay wrote it.
func (h *History) Ticks(ctx context.Context, q tick.Query) ([]tick.Tick, error) {
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
	sql := "SELECT " + tickSelectList(true) + " FROM " + h.table +
		" WHERE " + strings.Join(where, " AND ") +
		" GROUP BY timestamp, received_at" +
		" ORDER BY timestamp DESC, received_at DESC LIMIT " + strconv.Itoa(limit)
	var r tickResult
	out := make([]tick.Tick, 0, min(limit, 256))
	p := tick.Pair{Exchange: q.Exchange, Symbol: q.Symbol}
	if err := h.tr.query(ctx, sql, r.results(), func() error {
		out = r.appendTo(out, p)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: ticks: %w", err)
	}
	return out, nil
}

// ErrBadCandleQuery wraps the reasons Candles refuses a query; the API
// checks its own bounds first, so this is a guard, not a user message.
var ErrBadCandleQuery = errors.New("bad candle query")

// Candles computes OHLC buckets in ClickHouse over [From, To): open is the
// first price in the bucket by event time, close the last (receive time
// breaking ties), high and low the extremes, and the tick count. Buckets
// are aligned to the Unix epoch, hence to UTC midnight for every interval
// that divides a day. Buckets with no ticks are absent.
//
// Each price is written as the tick that supplied it wrote it: open and
// close take their tick's scale; high and low the scale of the first tick
// (by event time, then receive time) to reach that price, since ticks at
// one price may spell it differently ("100.5", "100.50").
func (h *History) Candles(ctx context.Context, q tick.CandleQuery) ([]tick.Candle, error) {
	iv := q.Interval.Milliseconds()
	switch {
	case iv <= 0 || q.Interval%time.Millisecond != 0:
		return nil, fmt.Errorf("%w: interval %s is not a positive whole number of milliseconds", ErrBadCandleQuery, q.Interval)
	case !q.From.Before(q.To):
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrBadCandleQuery, q.From, q.To)
	case q.To.Sub(q.From)/q.Interval > MaxCandles:
		return nil, fmt.Errorf("%w: more than %d buckets", ErrBadCandleQuery, MaxCandles)
	}
	ivs := strconv.FormatInt(iv, 10)
	// The inner query collapses replayed copies to one row per tick, so
	// the count is of ticks, not of rows.
	sql := "SELECT intDiv(timestamp, " + ivs + ") * " + ivs + " AS bucket," +
		" argMin(p, (timestamp, received_at)) AS open," +
		" max(p) AS high, min(p) AS low," +
		" argMax(p, (timestamp, received_at)) AS close," +
		" count() AS ticks," +
		" argMin(ps, (timestamp, received_at)) AS open_scale," +
		" argMax(ps, (p, -timestamp, -received_at)) AS high_scale," +
		" argMin(ps, (p, timestamp, received_at)) AS low_scale," +
		" argMax(ps, (timestamp, received_at)) AS close_scale" +
		" FROM (SELECT timestamp, received_at, any(price) AS p, any(price_scale) AS ps FROM " + h.table +
		" WHERE " + pairFilter(q.Exchange, q.Symbol) +
		" AND timestamp >= " + strconv.FormatInt(q.From.UnixMilli(), 10) +
		" AND timestamp < " + strconv.FormatInt(q.To.UnixMilli(), 10) +
		" GROUP BY timestamp, received_at)" +
		" GROUP BY bucket ORDER BY bucket"
	var (
		bucket              proto.ColInt64
		opn, high, low, cls proto.ColDecimal128
		ticks               proto.ColUInt64
		scales              [4]proto.ColUInt8 // open, high, low, close
	)
	res := proto.Results{
		{Name: "bucket", Data: &bucket},
		{Name: "open", Data: proto.Alias(&opn, decimalType)},
		{Name: "high", Data: proto.Alias(&high, decimalType)},
		{Name: "low", Data: proto.Alias(&low, decimalType)},
		{Name: "close", Data: proto.Alias(&cls, decimalType)},
		{Name: "ticks", Data: &ticks},
		{Name: "open_scale", Data: &scales[0]},
		{Name: "high_scale", Data: &scales[1]},
		{Name: "low_scale", Data: &scales[2]},
		{Name: "close_scale", Data: &scales[3]},
	}
	var out []tick.Candle
	if err := h.tr.query(ctx, sql, res, func() error {
		for i := 0; i < bucket.Rows(); i++ {
			out = append(out, tick.Candle{Start: time.UnixMilli(bucket.Row(i)).UTC(), Ticks: ticks.Row(i)})
			c := &out[len(out)-1]
			fromDecimal128(&c.Open, opn.Row(i), scales[0].Row(i))
			fromDecimal128(&c.High, high.Row(i), scales[1].Row(i))
			fromDecimal128(&c.Low, low.Row(i), scales[2].Row(i))
			fromDecimal128(&c.Close, cls.Row(i), scales[3].Row(i))
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: candles: %w", err)
	}
	if len(out) > 0 {
		if err := h.attachVolume(ctx, q, out); err != nil {
			// The prices stand without it: a chart without volume beats no
			// chart (the trades table may not exist yet in an API-only
			// process, or trades are not consumed).
			h.log.Warn("store: candles without traded volume", "err", err)
		}
	}
	return out, nil
}

// attachVolume sets each candle's Volume and Trades from the trades table:
// one more query over the same range, each trade once however often it
// was written (grouped by its key, as Trades reads it). The sum is exact:
// Decimal(38, 18) summed in ClickHouse, spelled with the most decimal
// places any of the bucket's sizes had. A bucket with trades but no tick
// has no prices and stays out.
func (h *History) attachVolume(ctx context.Context, q tick.CandleQuery, out []tick.Candle) error {
	ivs := strconv.FormatInt(q.Interval.Milliseconds(), 10)
	sql := "SELECT intDiv(timestamp, " + ivs + ") * " + ivs + " AS bucket," +
		" sum(s) AS volume, count() AS trades, max(ss) AS volume_scale" +
		" FROM (SELECT timestamp, trade_id, any(size) AS s, any(size_scale) AS ss FROM " + h.tradesTable +
		" WHERE " + pairFilter(q.Exchange, q.Symbol) +
		" AND timestamp >= " + strconv.FormatInt(q.From.UnixMilli(), 10) +
		" AND timestamp < " + strconv.FormatInt(q.To.UnixMilli(), 10) +
		" GROUP BY timestamp, trade_id)" +
		" GROUP BY bucket ORDER BY bucket"
	var (
		bucket proto.ColInt64
		volume proto.ColDecimal128
		trades proto.ColUInt64
		scale  proto.ColUInt8
	)
	res := proto.Results{
		{Name: "bucket", Data: &bucket},
		{Name: "volume", Data: proto.Alias(&volume, decimalType)},
		{Name: "trades", Data: &trades},
		{Name: "volume_scale", Data: &scale},
	}
	j := 0
	return h.tr.query(ctx, sql, res, func() error {
		for i := 0; i < bucket.Rows(); i++ {
			start := bucket.Row(i)
			for j < len(out) && out[j].Start.UnixMilli() < start {
				j++
			}
			if j < len(out) && out[j].Start.UnixMilli() == start {
				fromDecimal128(&out[j].Volume, volume.Row(i), scale.Row(i))
				out[j].Trades = trades.Row(i)
			}
		}
		return nil
	})
}
