package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

// The candle cases join the shared suite, so the in-process, Redis and
// Redis Cluster backends all pass them.
func init() { suite = append(suite, candleSuite...) }

// minute is the start of a 1m bucket well inside real time, so Redis and
// memory agree on nothing but the data.
const minute0 = int64(1_767_225_600_000) // 2026-01-01T00:00:00Z

func at(min, sec int) int64 { return minute0 + int64(min)*60_000 + int64(sec)*1000 }

// mkr is mk with an explicit receive time, for late and replayed ticks.
func mkr(ts, recv int64, price string) tick.Tick {
	t := mk("binance", "BTCUSDT", ts, price)
	t.ReceivedAt = recv
	return t
}

func candleQ(iv time.Duration, from, to int64) tick.CandleQuery {
	return tick.CandleQuery{Exchange: "binance", Symbol: "BTCUSDT", Interval: iv,
		From: time.UnixMilli(from).UTC(), To: time.UnixMilli(to).UTC()}
}

// fmtCandles renders candles as "min:open/high/low/close/ticks", minutes
// from minute0, so a failure reads at a glance.
func fmtCandles(cs []tick.Candle) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%d:%s/%s/%s/%s/%d", (c.Start.UnixMilli()-minute0)/60_000,
			c.Open.Text('f'), c.High.Text('f'), c.Low.Text('f'), c.Close.Text('f'), c.Ticks)
	}
	return strings.Join(parts, " ")
}

func wantCandles(t *testing.T, h *harness, q tick.CandleQuery, want string) tick.CandleWindow {
	t.Helper()
	w, err := h.sink.RecentCandles(context.Background(), q)
	if err != nil {
		t.Fatalf("RecentCandles(%s): %v", q.Interval, err)
	}
	if got := fmtCandles(w.Candles); got != want {
		t.Errorf("RecentCandles(%s) =\n  %s\nwant\n  %s", q.Interval, got, want)
	}
	return w
}

// forgetWatermarks makes the Redis backend guess the watermark again and
// forget the buckets it wrote, as a new owner of the pair does after a
// crash or a partition move.
func forgetWatermarks(h *harness) {
	if r, ok := h.sink.be.Load().backend.(*redisBackend); ok {
		r.wmMu.Lock()
		r.wm, r.known = nil, nil
		r.wmMu.Unlock()
	}
}

var candleSuite = []struct {
	name string
	cfg  func(*Config)
	run  func(t *testing.T, h *harness)
}{
	{name: "candles: OHLC by event time in 1m buckets, merged into coarser ones", run: func(t *testing.T, h *harness) {
		// Out of order by event time within and across batches.
		write(t, h, mkr(at(0, 30), 1, "101"), mkr(at(0, 10), 2, "100"), mkr(at(0, 50), 3, "99.5"))
		write(t, h, mkr(at(1, 5), 4, "102.25"), mkr(at(0, 40), 5, "103"), mkr(at(1, 30), 6, "9.75"), mkr(at(5, 0), 7, "10.5"))
		wantCandles(t, h, candleQ(time.Minute, at(0, 0), at(10, 0)),
			"0:100/103/99.5/99.5/4 1:102.25/102.25/9.75/9.75/2 5:10.5/10.5/10.5/10.5/1")
		w := wantCandles(t, h, candleQ(5*time.Minute, at(0, 0), at(10, 0)),
			"0:100/103/9.75/9.75/6 5:10.5/10.5/10.5/10.5/1")
		// The first bucket may be cut short (the cache started in it).
		if w.Since != at(1, 0) {
			t.Errorf("Since = %d, want %d (the bucket after the first)", w.Since, at(1, 0))
		}
		wantCandles(t, h, candleQ(time.Minute, at(1, 0), at(5, 0)), "1:102.25/102.25/9.75/9.75/2")
	}},
	{name: "candles: a retried, replayed or re-owned batch counts nothing twice", run: func(t *testing.T, h *harness) {
		batch := []tick.Tick{mkr(at(0, 1), 10, "5"), mkr(at(0, 2), 11, "6"), mkr(at(1, 0), 12, "7")}
		write(t, h, batch...)
		write(t, h, batch...)     // the runtime's retry
		write(t, h, batch[1:]...) // a replay from a later commit
		forgetWatermarks(h)
		write(t, h, append(batch, mkr(at(1, 1), 13, "8"))...) // a new owner replays, then goes on
		// A late tick: old event time, received after everything.
		write(t, h, mkr(at(0, 0), 14, "4"), mkr(at(0, 0), 14, "4"))
		wantCandles(t, h, candleQ(time.Minute, at(0, 0), at(2, 0)), "0:4/6/4/6/3 1:7/8/7/8/2")
		// Redis had to be asked again once, for the forgotten watermark;
		// memory knows its own.
		want := 1.0
		if _, mem := h.sink.be.Load().backend.(*memory); mem {
			want = 0
		}
		if got := metric(t, h.reg, "tickflow_cache_candle_updates_recomputed_total"); got != want {
			t.Errorf("recomputed counter = %v, want %v", got, want)
		}
	}},
	{name: "candles: prices compare as decimals and keep their first spelling", run: func(t *testing.T, h *harness) {
		write(t, h, mkr(at(0, 1), 1, "9.5"), mkr(at(0, 2), 2, "10.25"), mkr(at(0, 3), 3, "10.250"),
			mkr(at(0, 4), 4, "0.0000006"))
		write(t, h, mkr(at(0, 5), 5, "0.00000060"), mkr(at(0, 6), 6, "10.2500"), mkr(at(0, 7), 7, "9.99"))
		wantCandles(t, h, candleQ(time.Minute, at(0, 0), at(1, 0)), "0:9.5/10.25/0.0000006/9.99/7")
	}},
	{name: "candles: only the retained window is kept", cfg: func(c *Config) { c.CandleRetention = 2 * time.Minute }, run: func(t *testing.T, h *harness) {
		for m := 0; m < 5; m++ {
			write(t, h, mkr(at(m, 0), int64(m+1), fmt.Sprint(m+1)))
		}
		write(t, h, mkr(at(1, 30), 10, "50"), mkr(at(3, 30), 11, "60")) // the first is too late to keep
		w := wantCandles(t, h, candleQ(time.Minute, at(0, 0), at(10, 0)), "2:3/3/3/3/1 3:4/60/4/60/2 4:5/5/5/5/1")
		if w.Since != at(2, 0) {
			t.Errorf("Since = %d, want %d (newest bucket - retention)", w.Since, at(2, 0))
		}
	}},
	{name: "candles: a backlog batch over many buckets keeps the retained ones", cfg: func(c *Config) { c.CandleRetention = 5 * time.Hour }, run: func(t *testing.T, h *harness) {
		var b []tick.Tick
		for m := range 600 { // ten hours, one tick a minute, in one batch
			b = append(b, mkr(at(m, 0), int64(m+1), fmt.Sprint(m+1)))
		}
		write(t, h, b...)
		w, err := h.sink.RecentCandles(context.Background(), candleQ(time.Minute, at(0, 0), at(600, 0)))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(w.Candles); n != 301 || w.Candles[0].Start.UnixMilli() != at(299, 0) || w.Candles[300].Close.Text('f') != "600" {
			t.Errorf("%d candles from %v to %v, want 301 from minute 299 closing at 600", n, w.Candles[0].Start, w.Candles[n-1])
		}
		wantCandles(t, h, candleQ(time.Hour, at(480, 0), at(600, 0)), "480:481/540/481/540/60 540:541/600/541/600/60")
	}},
	{name: "candles: an unknown pair has none, a bad interval is refused, off is said", run: func(t *testing.T, h *harness) {
		w := wantCandles(t, h, candleQ(time.Minute, at(0, 0), at(10, 0)), "")
		if w.Since != 0 {
			t.Errorf("Since = %d for an unknown pair, want 0", w.Since)
		}
		if _, err := h.sink.RecentCandles(context.Background(), candleQ(90*time.Second, at(0, 0), at(10, 0))); err == nil {
			t.Error("a 90s interval was accepted")
		}
		h.sink.cfg.CandleRetention = 0
		if _, err := h.sink.RecentCandles(context.Background(), candleQ(time.Minute, at(0, 0), at(10, 0))); !errors.Is(err, errCandlesOff) {
			t.Errorf("with candles off: %v, want errCandlesOff", err)
		}
	}},
}
