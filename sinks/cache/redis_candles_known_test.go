package cache

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// The candle hashes the sink leaves when it merges in Go (two instances
// taking turns on the pairs, one of them restarting now and then, batches
// retried and replayed, late ticks, trims) are field for field the ones
// the merging script alone leaves for the same batches.
func TestCandleMergeHereMatchesTheScript(t *testing.T) {
	srv := testsvc.StartRedis(t)
	admin := rawClient(t, srv.Addr())
	if err := admin.Do(context.Background(), admin.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	open := func(db int) *harness {
		cfg := *DefaultConfig()
		cfg.Redis.Addrs, cfg.Redis.DB = []string{srv.Addr()}, db
		cfg.CandleRetention = 3 * time.Minute
		return newHarness(t, cfg, clock.Real)
	}
	a1, a2, ref := open(0), open(0), open(1)

	rng := rand.New(rand.NewPCG(9, 18))
	symbols := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT"}
	prices := []string{"100", "100.0", "99.5", "101.25", "101.250", "0.0000006", "7", "100.00"}
	recv := map[string]int64{}
	now := map[string]int64{}
	var sent [][]tick.Tick
	for b := range 400 {
		var batch []tick.Tick
		switch r := rng.IntN(10); {
		case r < 2 && len(sent) > 0: // a retry or a replay from a later commit
			old := sent[rng.IntN(len(sent))]
			batch = slices.Clone(old[rng.IntN(len(old)):])
		default:
			for range 1 + rng.IntN(8) {
				sym := symbols[rng.IntN(len(symbols))]
				recv[sym]++
				now[sym] += int64(rng.IntN(20_000)) // ~10 s of event time a tick
				ts := at(0, 0) + now[sym]
				if rng.IntN(6) == 0 {
					ts -= int64(rng.IntN(150_000)) // late: up to 2.5 min old
				}
				tk := mk("binance", sym, ts, prices[rng.IntN(len(prices))])
				tk.ReceivedAt = recv[sym]
				batch = append(batch, tk)
			}
		}
		sent = append(sent, batch)
		w := a1
		if rng.IntN(3) == 0 {
			w = a2 // the pairs moved to the other instance, or back
		}
		if rng.IntN(25) == 0 {
			forgetWatermarks(w) // a restart
		}
		write(t, w, batch...)
		forgetWatermarks(ref) // the reference always goes through the script
		write(t, ref, batch...)
		if b%50 == 49 {
			compareCandleHashes(t, srv.Addr(), symbols, b)
		}
	}
	compareCandleHashes(t, srv.Addr(), symbols, 400)
	here := metric(t, a1.reg, "tickflow_cache_candle_updates_merged_here_total") +
		metric(t, a2.reg, "tickflow_cache_candle_updates_merged_here_total")
	if here < 300 {
		t.Errorf("%v updates merged here, want most of the ~1000: the test did not exercise the fast write", here)
	}
	if got := metric(t, ref.reg, "tickflow_cache_candle_updates_merged_here_total"); got != 0 {
		t.Errorf("the reference merged %v updates itself, want 0", got)
	}
	t.Logf("merged here: %v; recomputed: %v + %v", here,
		metric(t, a1.reg, "tickflow_cache_candle_updates_recomputed_total"),
		metric(t, a2.reg, "tickflow_cache_candle_updates_recomputed_total"))
}

// compareCandleHashes fails unless every pair's candle hash in DB 0 is
// the one in DB 1, field for field (metadata included).
func compareCandleHashes(t *testing.T, addr string, symbols []string, after int) {
	t.Helper()
	var got [2]map[string]map[string]string
	for db := range got {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, SelectDB: db, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		got[db] = map[string]map[string]string{}
		for _, sym := range symbols {
			m, err := c.Do(context.Background(), c.B().Hgetall().Key(candleKey(tick.Pair{Exchange: "binance", Symbol: sym})).Build()).AsStrMap()
			if err != nil {
				t.Fatal(err)
			}
			got[db][sym] = m
		}
		c.Close()
	}
	for _, sym := range symbols {
		if len(got[1][sym]) == 0 {
			t.Fatalf("after batch %d: %s has no candles in the reference", after, sym)
		}
		if !maps.Equal(got[0][sym], got[1][sym]) {
			t.Fatalf("after batch %d: %s candles differ\nmerged here: %v\nby script:   %v", after, sym, got[0][sym], got[1][sym])
		}
	}
}
