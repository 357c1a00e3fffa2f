package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// mkTrade is trade number i of ex:sym: its id, time and decimals follow
// from i, with trailing zeros a Decimal column alone would lose.
func mkTrade(ex, sym string, i int) tick.Trade {
	tr := tick.Trade{Exchange: ex, Symbol: sym, TradeID: fmt.Sprintf("%d", 1_000_000+i),
		Timestamp: 1_767_000_000_000 + int64(i)*10, ReceivedAt: (1_767_000_000_000+int64(i)*10)*1000 + 3,
		Price: tick.MustDecimal(fmt.Sprintf("50%03d.10", i%1000)), Size: tick.MustDecimal(fmt.Sprintf("0.%08d", 100000+i)), Side: tick.Buy}
	if i%2 == 1 {
		tr.Side = tick.Sell
	}
	if ex == "okx" {
		tr.Base, tr.Quote = "BTC", "USDT"
	}
	return tr
}

func sameTrade(a, b *tick.Trade) error {
	if x, y := a.AppendJSON(nil), b.AppendJSON(nil); string(x) != string(y) {
		return fmt.Errorf("trade:\n%s\n!=\n%s", x, y)
	}
	return nil
}

func TestTradesDDLByFeatures(t *testing.T) {
	old := tradesDDL("`db`.`t`", features{version: "18.16.1"}, 30)
	modern := tradesDDL("`db`.`t`", features{version: "24.8.1", lowCardinality: true, codecs: true, ttl: true}, 30)
	for _, tc := range []struct {
		ddl      string
		has, not []string
	}{
		{old, []string{"ReplacingMergeTree", "ORDER BY (exchange, symbol, timestamp, trade_id)", "trade_id String,", "side String,",
			"price Decimal(38, 18),", "size_scale UInt8\n)"}, []string{"LowCardinality", "CODEC", "TTL"}},
		{modern, []string{"side LowCardinality(String)", "base LowCardinality(String)", "trade_id String,", "CODEC(Delta, ZSTD(1))", "INTERVAL 30 DAY"}, nil},
	} {
		for _, s := range tc.has {
			if !strings.Contains(tc.ddl, s) {
				t.Errorf("DDL lacks %q:\n%s", s, tc.ddl)
			}
		}
		for _, s := range tc.not {
			if strings.Contains(tc.ddl, s) {
				t.Errorf("DDL has %q:\n%s", s, tc.ddl)
			}
		}
	}
}

// TestTradesWriteRead: trades land in their own table and read back
// exactly, newest first, in pages and ranges; a batch written again (the
// runtime's retry after a lost commit) is not visible twice; a trade that
// is not valid or does not fit is rejected and counted, the rest written.
func TestTradesWriteRead(t *testing.T) {
	ch := clickHouse(t)
	s, reg := newSink(t, ch.HTTPURL(), nil)
	w := s.TradeWriter()
	ctx := bg(t)
	if err := w.WriteBatch(ctx, []tick.Trade{mkTrade("okx", "BTC-USDT", 0)}); err == nil {
		t.Fatal("WriteBatch before Connect succeeded")
	}
	if err := w.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	db := testDB(t)
	sql(t, ch, "SYSTEM STOP MERGES "+db+".market_trades") // the reads must hide the copies, not a merge
	var in []tick.Trade
	for i := range 50 {
		in = append(in, mkTrade("okx", "BTC-USDT", i))
	}
	other := mkTrade("kraken", "BTC/USD", 7)
	bad := mkTrade("okx", "BTC-USDT", 100)
	bad.TradeID = ""
	precise := mkTrade("okx", "BTC-USDT", 101)
	precise.Size = tick.MustDecimal("0.0000000000000000001")
	batch := append(append([]tick.Trade{}, in...), other, bad, precise)
	for range 2 { // the second time is the redelivery
		if err := w.WriteBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if raw := sql(t, ch, "SELECT count() FROM "+db+".market_trades"); raw != "102" {
		t.Fatalf("%s rows on disk, want 102 (51 trades twice): the redelivery must really be there", raw)
	}
	got, err := s.Trades(ctx, tick.Query{Exchange: "okx", Symbol: "BTC-USDT"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d trades visible, want %d", len(got), len(in))
	}
	for i := range got {
		if err := sameTrade(&got[i], &in[len(in)-1-i]); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(string(got[len(got)-1].AppendJSON(nil)), `"size":"0.00100000"`) {
		t.Errorf("size not kept to its text: %s", got[len(got)-1].AppendJSON(nil))
	}
	// A range and a page.
	page, err := s.Trades(ctx, tick.Query{Exchange: "okx", Symbol: "BTC-USDT", From: time.UnixMilli(in[10].Timestamp), To: time.UnixMilli(in[30].Timestamp),
		Before: in[20].Timestamp, Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 5 || page[0].TradeID != in[19].TradeID || page[4].TradeID != in[15].TradeID {
		t.Fatalf("page: %d trades from %v", len(page), page)
	}
	k, err := s.Trades(ctx, tick.Query{Exchange: "kraken", Symbol: "BTC/USD"})
	if err != nil || len(k) != 1 || sameTrade(&k[0], &other) != nil {
		t.Fatalf("kraken: %v %v", k, err)
	}
	// Each of the two writes settled, so each counts its rejects.
	for reason, want := range map[string]float64{"invalid": 2, "too_precise": 2} {
		if n := testutil.ToFloat64(s.m.tradesRejected.WithLabelValues(reason)); n != want {
			t.Errorf("trades_rejected_total{reason=%q} = %v, want %v", reason, n, want)
		}
	}
	if n := testkit.Metric(reg, "tickflow_store_trade_rows_inserted_total"); n != 102 {
		t.Errorf("trade rows inserted = %v, want 102", n)
	}
	// Through the API, as a client reads them.
	rec := httptest.NewRecorder()
	api.New(api.Options{TradeHistory: s}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/trades/okx/BTC-USDT/history?limit=3", nil))
	var body struct {
		Data struct {
			Trades     []tick.Trade `json:"trades"`
			NextBefore int64        `json:"next_before"`
		} `json:"data"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK || len(body.Data.Trades) != 3 ||
		sameTrade(&body.Data.Trades[0], &in[len(in)-1]) != nil || body.Data.NextBefore != in[len(in)-3].Timestamp {
		t.Fatalf("GET trade history: %d %v %s", rec.Code, err, rec.Body)
	}
	// The tick table is untouched.
	if n := sql(t, ch, "SELECT count() FROM "+db+".market_ticks"); n != "0" {
		t.Errorf("%s rows in the tick table", n)
	}
}

// TestTradesTableChecked: a trades table that cannot hide duplicates or
// lacks a column is refused at Connect.
func TestTradesTableChecked(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	sql(t, ch, "CREATE DATABASE "+db)
	sql(t, ch, "CREATE TABLE "+db+".mt (exchange String, symbol String, trade_id String, timestamp Int64) ENGINE = MergeTree ORDER BY (exchange, symbol, timestamp)")
	sql(t, ch, "CREATE TABLE "+db+".half (exchange String, symbol String, trade_id String, timestamp Int64) ENGINE = ReplacingMergeTree ORDER BY (exchange, symbol, timestamp)")
	for table, want := range map[string]string{"mt": "ReplacingMergeTree", "half": "no column base"} {
		s, _ := newSink(t, ch.HTTPURL(), func(c *Config) { c.ClickHouse.TradesTable = table })
		if err := s.TradeWriter().Connect(bg(t)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Connect = %v, want an error containing %q", table, err, want)
		}
	}
}

// crashingTrades lets its n-th batch reach ClickHouse, then dies before the
// runtime can mark it, like crashingSink for ticks.
type crashingTrades struct {
	sinks.TradeSink
	after   int
	n       int
	crashed atomic.Bool
	crash   func()
}

func (c *crashingTrades) WriteBatch(ctx context.Context, b []tick.Trade) error {
	if c.crashed.Load() {
		return errCrashed
	}
	if err := c.TradeSink.WriteBatch(ctx, b); err != nil {
		return err
	}
	if c.n++; c.n == c.after {
		c.crashed.Store(true)
		c.crash()
		return errCrashed
	}
	return nil
}

// TestTradesEndToEndRedelivered: trades go through the broker's trades
// topic and the trades runtime (group tickflow.store.trades) into
// ClickHouse; a crash between an INSERT and its commit makes the next
// runtime write that batch again, and no trade is visible twice.
func TestTradesEndToEndRedelivered(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	p := startPipeline(t, 2)
	ctx := bg(t)
	if err := bus.EnsureTopic(ctx, p.cc, ingest.TradeTopic, 2, -1); err != nil {
		t.Fatal(err)
	}
	var want []tick.Trade
	for i := range 1500 {
		ex, sym := "okx", "BTC-USDT"
		if i%3 == 0 {
			ex, sym = "kraken", "BTC/USD"
		}
		want = append(want, mkTrade(ex, sym, i))
	}
	for i := range want {
		if err := p.prod.Publish(ctx, ingest.TradeTopic, want[i].AppendKey(nil), want[i].AppendJSON(nil)); err != nil {
			t.Fatal(err)
		}
	}
	first := newE2ESink(t, ch.HTTPURL(), db)
	if err := first.TradeWriter().Connect(ctx); err != nil {
		t.Fatal(err)
	}
	sql(t, ch, "SYSTEM STOP MERGES "+db+".market_trades")
	crashed := make(chan struct{})
	crashing := &crashingTrades{TradeSink: first.TradeWriter(), after: 3, crash: func() { close(crashed) }}
	batch := sinks.BatchPolicy{Size: 200, MaxWait: 20 * time.Millisecond}
	reg := prometheus.NewRegistry()
	run := func(s sinks.TradeSink) func() {
		rt, err := bus.NewTradeRuntime(bus.TradeRuntimeConfig{
			Client: p.cc, Topic: ingest.TradeTopic, Group: "tickflow.store.trades", Name: "store.trades", Sink: s, Batch: batch,
			BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Metrics: bus.NewRuntimeMetrics(reg),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(rctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("runtime: %v", err)
			}
		}
	}
	stop := run(crashing)
	<-crashed
	stop()
	reg = prometheus.NewRegistry()
	second := newE2ESink(t, ch.HTTPURL(), db)
	stop = run(second.TradeWriter())
	defer stop()

	visible := func() (map[string]tick.Trade, error) {
		got := map[string]tick.Trade{}
		for _, pr := range []tick.Pair{{Exchange: "okx", Symbol: "BTC-USDT"}, {Exchange: "kraken", Symbol: "BTC/USD"}} {
			ts, err := second.Trades(ctx, tick.Query{Exchange: pr.Exchange, Symbol: pr.Symbol, Limit: maxTickLimit})
			if err != nil {
				return nil, err
			}
			for _, tr := range ts {
				k := tr.Key() + "/" + tr.TradeID
				if _, dup := got[k]; dup {
					t.Fatalf("trade %s visible twice", k)
				}
				got[k] = tr
			}
		}
		return got, nil
	}
	testkit.Eventually(t, 30*time.Second, "every trade stored after the replay", func() bool {
		got, err := visible()
		return err == nil && len(got) == len(want)
	})
	got, _ := visible()
	for i := range want {
		g, ok := got[want[i].Key()+"/"+want[i].TradeID]
		if !ok {
			t.Fatalf("trade %s missing", want[i].TradeID)
		}
		if err := sameTrade(&g, &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	var raw int
	fmt.Sscan(sql(t, ch, "SELECT count() FROM "+db+".market_trades"), &raw)
	if raw <= len(want) {
		t.Fatalf("%d rows on disk: the replay wrote no copies, so the test proves nothing", raw)
	}
	if n := testkit.Metric(reg, "tickflow_sink_trades_total", "sink", "store.trades"); n == 0 {
		t.Error("tickflow_sink_trades_total{sink=store.trades} did not count the trades written")
	}
	t.Logf("%d rows on disk for %d trades; each visible once", raw, len(want))
}
