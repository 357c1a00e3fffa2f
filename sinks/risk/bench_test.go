package risk

import (
	"context"
	"fmt"
	"math/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// benchTicks is a deterministic random walk over 100 pairs (50 symbols on
// two exchanges, so the cross-exchange rule has work), one tick per pair
// every 100 ms of event time, with a book and a 24 h open on every tick.
func benchTicks(n int) []tick.Tick {
	rng := rand.New(rand.NewSource(1))
	const symbols = 50
	exchanges := []string{"binance", "okx"}
	prices := make([]int64, symbols*len(exchanges)) // in 1e-4 units
	for i := range prices {
		prices[i] = int64(100_000 + 10_000*(i%symbols))
	}
	out := make([]tick.Tick, n)
	for i := range out {
		p := i % len(prices)
		step := prices[p] * int64(rng.Intn(61)-30) / 10_000 // up to ±0.3 %
		prices[p] += step
		price := prices[p]
		t := &out[i]
		t.Exchange, t.Symbol = exchanges[p/symbols], fmt.Sprintf("SYM%02dUSDT", p%symbols)
		t.Timestamp = int64(i) // rewritten per pass
		t.Price.SetFinite(price, -4)
		t.Bid.SetFinite(price-1, -4)
		t.Ask.SetFinite(price+1, -4)
		t.Open24h.SetFinite(int64(100_000+10_000*(p%symbols)), -4)
		t.Volume.SetFinite(12345, -2)
	}
	return out
}

type countingBus struct{ n atomic.Int64 }

func (c *countingBus) Publish(context.Context, string, []byte, []byte) error {
	c.n.Add(1)
	return nil
}

// BenchmarkRiskWriteBatch is the monitor's throughput with every rule on
// (volatility, vs-24h-open, stale feed, crossed book, cross-exchange spike),
// 500-tick batches as the runtime delivers them, alerts JSON-encoded and
// handed to a publisher that returns at once. One op is one tick.
func BenchmarkRiskWriteBatch(b *testing.B) {
	for _, withState := range []bool{false, true} {
		name := "memory"
		if withState {
			name = "state_dir"
		}
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Volatility.Open24hThreshold = "0.1"
			cfg.StaleFeed.After = 2 * time.Second
			if withState {
				cfg.StateDir = b.TempDir()
			}
			pub := &countingBus{}
			s, err := New(sinks.Env{Name: "risk", Metrics: prometheus.NewRegistry(), Publisher: pub}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Connect(context.Background()); err != nil {
				b.Fatal(err)
			}
			runBatches(b, func(batch []tick.Tick) error { return s.WriteBatch(context.Background(), batch) })
			b.ReportMetric(float64(pub.n.Load())/float64(b.N)*1e6, "alerts/Mtick")
		})
	}
}

// runBatches feeds b.N ticks in 500-tick batches, cycling through a fixed
// set whose event times are moved forward on every pass.
func runBatches(b *testing.B, write func([]tick.Tick) error) {
	const set, batch, step = 100_000, 500, 1 // one tick per ms overall: 100 ms per pair
	ticks := benchTicks(set)
	var now int64 = 1_700_000_000_000
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		if done%set == 0 {
			b.StopTimer()
			for i := range ticks {
				ticks[i].Timestamp = now
				now += step
			}
			b.StartTimer()
		}
		off := done % set
		n := min(batch, b.N-done, set-off)
		if err := write(ticks[off : off+n]); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ticks/s")
}

// BenchmarkBaselineDecode is the raw baseline for the same run: decoding
// the same ticks from their JSON, the work the runtime does for every sink
// before WriteBatch. One op is one tick.
func BenchmarkBaselineDecode(b *testing.B) {
	ticks := benchTicks(1000)
	raw := make([][]byte, len(ticks))
	for i := range ticks {
		raw[i] = ticks[i].AppendJSON(nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var t tick.Tick
	for i := 0; i < b.N; i++ {
		if err := tick.Unmarshal(raw[i%len(raw)], &t); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ticks/s")
}
