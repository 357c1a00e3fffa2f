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

// The volume cases join the shared suite: memory, Redis, Redis Cluster.
func init() { suite = append(suite, volumeSuite...) }

// mkt is a trade of the candle pair with an explicit receive time (µs).
func mkt(ts, recv int64, id, size string) tick.Trade {
	tr := tick.Trade{Exchange: "binance", Symbol: "BTCUSDT", Side: tick.Buy, TradeID: id, Timestamp: ts, ReceivedAt: recv}
	tr.Price.SetInt64(100)
	if _, _, err := tr.Size.SetString(size); err != nil {
		panic(err)
	}
	return tr
}

func writeTrades(t *testing.T, h *harness, trs ...tick.Trade) {
	t.Helper()
	if err := h.sink.TradeWriter().WriteBatch(context.Background(), trs); err != nil {
		t.Fatalf("trade WriteBatch: %v", err)
	}
}

// fmtVolumes renders candles as "min:volume/trades", "-" for a bucket
// without counted trades.
func fmtVolumes(cs []tick.Candle) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		v := "-"
		if c.Trades > 0 {
			v = fmt.Sprintf("%s/%d", c.Volume.Text('f'), c.Trades)
		}
		parts[i] = fmt.Sprintf("%d:%s", (c.Start.UnixMilli()-minute0)/60_000, v)
	}
	return strings.Join(parts, " ")
}

func wantVolumes(t *testing.T, h *harness, q tick.CandleQuery, want string) {
	t.Helper()
	w, err := h.sink.RecentCandles(context.Background(), q)
	if err != nil {
		t.Fatalf("RecentCandles(%s): %v", q.Interval, err)
	}
	if got := fmtVolumes(w.Candles); got != want {
		t.Errorf("volumes (%s) =\n  %s\nwant\n  %s", q.Interval, got, want)
	}
}

// forgetTradeWatermarks is forgetWatermarks for the trade watermark.
func forgetTradeWatermarks(h *harness) {
	if r, ok := h.sink.be.Load().backend.(*redisBackend); ok {
		r.wmMu.Lock()
		r.twm = nil
		r.wmMu.Unlock()
	}
}

var volumeSuite = []struct {
	name string
	cfg  func(*Config)
	run  func(t *testing.T, h *harness)
}{
	{name: "volume: exact sums of trade sizes per 1m bucket, on the tick candles", run: func(t *testing.T, h *harness) {
		write(t, h, mkr(at(0, 1), 1, "100"), mkr(at(1, 1), 2, "101"), mkr(at(2, 1), 3, "102"))
		// 0.1 + 0.2 is 0.3 only in decimal; 20 significant digits are past
		// a double's; minute 3 has trades but no tick, so no candle.
		writeTrades(t, h, mkt(at(0, 5), 10, "a", "0.1"), mkt(at(0, 6), 10, "b", "0.2"),
			mkt(at(1, 5), 11, "c", "12345678901234567890.5"), mkt(at(3, 0), 11, "d", "7"))
		writeTrades(t, h, mkt(at(0, 7), 12, "e", "0.00000001"), mkt(at(1, 6), 12, "f", "0.75"))
		wantVolumes(t, h, candleQ(time.Minute, at(0, 0), at(10, 0)),
			"0:0.30000001/3 1:12345678901234567891.25/2 2:-")
		wantVolumes(t, h, candleQ(5*time.Minute, at(0, 0), at(10, 0)), "0:12345678901234567891.55000001/5")
	}},
	{name: "volume: a retried, replayed, re-owned or split batch counts each trade once", run: func(t *testing.T, h *harness) {
		write(t, h, mkr(at(0, 1), 1, "1"), mkr(at(1, 1), 2, "2"))
		// One frame's three trades share a receive time; the runtime's
		// batch may end inside it.
		frame := []tick.Trade{mkt(at(0, 10), 50, "z9", "1"), mkt(at(0, 10), 50, "a1", "2"), mkt(at(0, 11), 50, "m5", "4")}
		writeTrades(t, h, mkt(at(0, 2), 40, "x", "0.5"), frame[0])
		writeTrades(t, h, mkt(at(0, 2), 40, "x", "0.5"), frame[0]) // the retry
		writeTrades(t, h, frame...)                                // the rest of the frame, replayed from its start
		forgetTradeWatermarks(h)
		writeTrades(t, h, append(frame[1:], mkt(at(1, 2), 60, "n", "8"))...) // a new owner replays, then goes on
		// Late: an old event time, received after everything.
		writeTrades(t, h, mkt(at(0, 0), 70, "late", "16"), mkt(at(0, 0), 70, "late", "16"))
		wantVolumes(t, h, candleQ(time.Minute, at(0, 0), at(2, 0)), "0:23.5/5 1:8/1")
		if got := metric(t, h.reg, "tickflow_cache_trades_counted_total"); got != 6 {
			t.Errorf("counted = %v, want 6", got)
		}
		if got := metric(t, h.reg, "tickflow_cache_trades_redelivered_total"); got != 6 {
			t.Errorf("redelivered = %v, want 6 (2 + 1 + 2 + 1 in the batch)", got)
		}
	}},
	{name: "volume: invalid trades are dropped and counted, only the retained window is kept", cfg: func(c *Config) { c.CandleRetention = 2 * time.Minute }, run: func(t *testing.T, h *harness) {
		for m := 0; m < 5; m++ {
			write(t, h, mkr(at(m, 0), int64(m+1), "1"))
		}
		noRecv := mkt(at(4, 1), 0, "r", "1")
		spaced := mkt(at(4, 1), 5, "a b", "1")
		bad := mkt(at(4, 1), 5, "neg", "1")
		bad.Size.SetInt64(-1)
		var trs []tick.Trade
		for m := 0; m < 5; m++ {
			trs = append(trs, mkt(at(m, 1), int64(10+m), fmt.Sprint("t", m), "1.5"))
		}
		writeTrades(t, h, append(trs, noRecv, spaced, bad)...)
		wantVolumes(t, h, candleQ(time.Minute, at(0, 0), at(10, 0)), "2:1.5/1 3:1.5/1 4:1.5/1")
		if got := metric(t, h.reg, "tickflow_cache_trades_invalid_total"); got != 3 {
			t.Errorf("invalid = %v, want 3", got)
		}
	}},
}

func init() { suite = append(suite, recentTradesSuite...) }

func tradeIDs(trs []tick.Trade) string {
	ids := make([]string, len(trs))
	for i := range trs {
		ids[i] = trs[i].TradeID
	}
	return strings.Join(ids, " ")
}

var recentTradesSuite = []struct {
	name string
	cfg  func(*Config)
	run  func(t *testing.T, h *harness)
}{
	{name: "trades: the newest kept, newest first, a redelivered one once", cfg: func(c *Config) { c.Trades = 5 }, run: func(t *testing.T, h *harness) {
		ctx := context.Background()
		first := []tick.Trade{mkt(at(0, 3), 1, "c", "1"), mkt(at(0, 1), 2, "a", "1"), mkt(at(0, 2), 3, "b", "1.50")}
		writeTrades(t, h, first...)
		writeTrades(t, h, first...) // the retry
		writeTrades(t, h, mkt(at(0, 5), 4, "e", "2"), mkt(at(0, 4), 5, "d", "3"), mkt(at(0, 6), 6, "f", "4"))
		got, err := h.sink.RecentTrades(ctx, "binance", "BTCUSDT", 100)
		if err != nil {
			t.Fatal(err)
		}
		if ids := tradeIDs(got); ids != "f e d c b" {
			t.Errorf("recent trades %q, want the newest five by event time, newest first: f e d c b", ids)
		}
		if got[3].Size.Text('f') != "1" || got[4].Size.Text('f') != "1.50" || got[4].Timestamp != at(0, 2) || got[4].ReceivedAt != 3 {
			t.Errorf("trade b came back as %+v", got[4])
		}
		if got, err := h.sink.RecentTrades(ctx, "binance", "BTCUSDT", 2); err != nil || tradeIDs(got) != "f e" {
			t.Errorf("limit 2: %q, %v; want f e", tradeIDs(got), err)
		}
		if got, err := h.sink.RecentTrades(ctx, "okx", "BTC-USDT", 10); err != nil || len(got) != 0 {
			t.Errorf("an unknown pair: %v, %v; want none", got, err)
		}
		h.sink.cfg.Trades = 0
		if _, err := h.sink.RecentTrades(ctx, "binance", "BTCUSDT", 10); !errors.Is(err, errTradesOff) {
			t.Errorf("with trades off: %v, want errTradesOff", err)
		}
	}},
}
