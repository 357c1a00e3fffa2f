package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/tick"
)

// Ticks go through the embedded broker and the sink runtime into Redis's
// rolling candles: late ticks (old event times, received later), records
// produced twice, and then the whole log consumed again by a second group
// with a fresh sink, as a new owner replays after a crash. Every bucket
// ends as the distinct ticks make it, computed here independently: each
// tick counted once, open and close by event time.
func TestCandlesThroughBrokerCountEachTickOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	redis := testsvc.StartRedis(t)
	cc, prod := startBroker(ctx, t, topic)

	// Five minutes of a pair, a tick every 100 ms of event time; every
	// seventh arrives 40 s late. Receive times rise in production order,
	// as ingest stamps them.
	base := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC).UnixMilli()
	var ticks []tick.Tick
	for i := range int64(3000) {
		ts := base + i*100
		if i%7 == 3 && ts-40_000 >= base {
			ts -= 40_000
		}
		tk := mk("binance", "BTCUSDT", ts, fmt.Sprintf("%d.%02d", 50000+(i*7919)%2000, i%100))
		tk.ReceivedAt = base*1000 + i*1000 + 500_000
		ticks = append(ticks, tk)
	}
	produce := func(ts []tick.Tick) {
		t.Helper()
		for i := range ts {
			if err := prod.Produce(ctx, &ts[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	produce(ticks)
	produce(ticks[:1000]) // the same records again
	sent := 4000

	want := expectCandles(ticks, base)
	consume := func(group string) *cache.Sink {
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
		rt, err := bus.NewRuntime(bus.RuntimeConfig{Client: cc, Topic: topic, Group: group, Name: "cache", Sink: sink,
			Batch: sinks.BatchPolicy{Size: 97, MaxWait: 5 * time.Millisecond}})
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
		testkit.Eventually(t, 30*time.Second, group+" to write every record", func() bool {
			return testkit.Metric(reg, "tickflow_cache_ticks_written_total") >= float64(sent)
		})
		return sink
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
			got = append(got, fmt.Sprintf("%d:%s/%s/%s/%s/%d", (c.Start.UnixMilli()-base)/60_000,
				c.Open.Text('f'), c.High.Text('f'), c.Low.Text('f'), c.Close.Text('f'), c.Ticks))
		}
		if g := strings.Join(got, " "); g != want {
			t.Errorf("%s:\n  %s\nwant\n  %s", when, g, want)
		}
	}
	check(consume("candles.first"), "after the first group")
	check(consume("candles.replay"), "after a second group replayed the whole log")
}

// expectCandles computes the 1m buckets of the distinct ticks the slow
// way: each tick once, open/close the least/greatest (event, receive)
// time, high/low by value.
func expectCandles(ticks []tick.Tick, base int64) string {
	type agg struct {
		open, close tick.Tick
		high, low   tick.Tick
		n           int
	}
	seen := map[[2]int64]bool{}
	buckets := map[int64]*agg{}
	var order []int64
	before := func(a, b tick.Tick) bool {
		return a.Timestamp < b.Timestamp || (a.Timestamp == b.Timestamp && a.ReceivedAt < b.ReceivedAt)
	}
	for _, tk := range ticks {
		id := [2]int64{tk.Timestamp, tk.ReceivedAt}
		if seen[id] {
			continue
		}
		seen[id] = true
		b := tk.Timestamp / 60_000 * 60_000
		a := buckets[b]
		if a == nil {
			a = &agg{open: tk, close: tk, high: tk, low: tk}
			buckets[b] = a
			order = append(order, b)
		}
		a.n++
		if before(tk, a.open) {
			a.open = tk
		}
		if before(a.close, tk) {
			a.close = tk
		}
		if c := tk.Price.Cmp(&a.high.Price); c > 0 || (c == 0 && before(tk, a.high)) {
			a.high = tk
		}
		if c := tk.Price.Cmp(&a.low.Price); c < 0 || (c == 0 && before(tk, a.low)) {
			a.low = tk
		}
	}
	var out []string
	for _, b := range order {
		a := buckets[b]
		out = append(out, fmt.Sprintf("%d:%s/%s/%s/%s/%d", (b-base)/60_000, a.open.Price.Text('f'), a.high.Price.Text('f'),
			a.low.Price.Text('f'), a.close.Price.Text('f'), a.n))
	}
	// Buckets in time order.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && order[j] < order[j-1]; j-- {
			order[j], order[j-1], out[j], out[j-1] = order[j-1], order[j], out[j-1], out[j]
		}
	}
	return strings.Join(out, " ")
}
