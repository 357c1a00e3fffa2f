package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/tick"
)

// Trades go through the embedded broker and a trade runtime (as the host
// runs the cache's sinks.TradeConsumer) into Redis's volume buckets:
// frames of several trades sharing a receive time, late trades, records
// produced twice, small batches that end inside a frame, and then the
// whole log consumed again by a second group with a fresh sink. Every
// bucket ends with the exact sum of its distinct trades, computed here
// independently.
func TestVolumeThroughBrokerCountsEachTradeOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	redis := testsvc.StartRedis(t)
	const tradeTopic = "market_data.trades"
	cc, prod := startBroker(ctx, t, tradeTopic)

	// Five minutes of a pair: a frame every 250 ms of one to four trades;
	// every ninth frame's trades are 30 s late.
	base := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	var trades []tick.Trade
	for f := range int64(1200) {
		ts := base + f*250
		if f%9 == 4 && ts-30_000 >= base {
			ts -= 30_000
		}
		for k := range f%4 + 1 {
			tr := tick.Trade{Exchange: "binance", Symbol: "BTCUSDT", Side: tick.Sell, Timestamp: ts + k,
				TradeID: fmt.Sprintf("%d", 900_000-f*4-k), ReceivedAt: base*1000 + f*250_000 + 300}
			tr.Price = tick.MustDecimal("50000.5")
			tr.Size = tick.MustDecimal(fmt.Sprintf("0.%06d", 1+(f*7919+k*104729)%999_999))
			trades = append(trades, tr)
		}
	}
	produce := func(trs []tick.Trade) {
		t.Helper()
		keys, values := make([][]byte, len(trs)), make([][]byte, len(trs))
		for i := range trs {
			keys[i], values[i] = trs[i].AppendKey(nil), trs[i].AppendJSON(nil)
		}
		if _, err := prod.PublishAll(ctx, tradeTopic, keys, values); err != nil {
			t.Fatal(err)
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(trades)
	produce(trades[:700])
	distinct := len(trades)

	// The candles the volumes attach to: a tick a minute.
	var ticks []tick.Tick
	for m := range int64(5) {
		ticks = append(ticks, mk("binance", "BTCUSDT", base+m*60_000+30_000, "50000"))
	}
	want := expectVolumes(trades, base)
	consume := func(group string) (*cache.Sink, *prometheus.Registry) {
		t.Helper()
		spec, _ := sinks.Lookup("cache")
		cfg := spec.Config().(*cache.Config)
		cfg.Redis.Addrs = []string{redis.Addr()}
		reg := prometheus.NewRegistry()
		sk, err := spec.New(sinks.Env{Name: "cache", Metrics: reg}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		sink := sk.(*cache.Sink)
		if err := sink.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteBatch(ctx, ticks); err != nil {
			t.Fatal(err)
		}
		rt, err := bus.NewTradeRuntime(bus.TradeRuntimeConfig{Client: cc, Topic: tradeTopic, Group: group, Name: "cache.trades",
			Sink: sink.TradeWriter(), Batch: sinks.BatchPolicy{Size: 37, MaxWait: 5 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(rctx) }()
		t.Cleanup(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("runtime %s: %v", group, err)
			}
			_ = sink.Close(context.Background())
		})
		return sink, reg
	}
	check := func(s *cache.Sink, when string) {
		t.Helper()
		w, err := s.RecentCandles(ctx, tick.CandleQuery{Exchange: "binance", Symbol: "BTCUSDT", Interval: time.Minute,
			From: time.UnixMilli(base), To: time.UnixMilli(base + 10*60_000)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range w.Candles {
			got = append(got, fmt.Sprintf("%d:%s/%d", (c.Start.UnixMilli()-base)/60_000, c.Volume.Text('f'), c.Trades))
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s:\n  %s\nwant\n  %s", when, g, want)
		}
	}
	first, reg := consume("volume.first")
	testkit.Eventually(t, 30*time.Second, "the first group to count every trade and skip every copy", func() bool {
		return testkit.Metric(reg, "tickflow_cache_trades_counted_total")+
			testkit.Metric(reg, "tickflow_cache_trades_redelivered_total") >= float64(distinct+700)
	})
	if n := testkit.Metric(reg, "tickflow_cache_trades_counted_total"); n != float64(distinct) {
		t.Errorf("first group counted %v trades, want %d", n, distinct)
	}
	check(first, "after the first group")
	replay, reg2 := consume("volume.replay")
	testkit.Eventually(t, 30*time.Second, "the replaying group to see every record", func() bool {
		return testkit.Metric(reg2, "tickflow_cache_trades_redelivered_total") >= float64(distinct+700)
	})
	if n := testkit.Metric(reg2, "tickflow_cache_trades_counted_total"); n != 0 {
		t.Errorf("the replaying group counted %v trades again, want 0", n)
	}
	check(replay, "after a second group replayed the whole log")
}

// expectVolumes sums the distinct trades' sizes per 1m bucket, in order.
func expectVolumes(trades []tick.Trade, base int64) string {
	seen := map[string]bool{}
	sums := map[int64]*apd.Decimal{}
	counts := map[int64]int{}
	for i := range trades {
		tr := &trades[i]
		if seen[tr.TradeID] {
			continue
		}
		seen[tr.TradeID] = true
		b := (tr.Timestamp - base) / 60_000
		if sums[b] == nil {
			sums[b] = new(apd.Decimal)
		}
		if _, err := apd.BaseContext.Add(sums[b], sums[b], &tr.Size); err != nil {
			panic(err)
		}
		counts[b]++
	}
	var out []string
	for b := int64(0); b < 10; b++ {
		if sums[b] != nil {
			out = append(out, fmt.Sprintf("%d:%s/%d", b, sums[b].Text('f'), counts[b]))
		}
	}
	return strings.Join(out, " ")
}
