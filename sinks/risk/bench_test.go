package risk

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// benchTicks is a deterministic random walk over 100 pairs (50 instruments
// on two exchanges, so the cross-exchange rule has work), one tick per pair
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
		// Each exchange's own spelling, and the instrument the ingest
		// pump gives both.
		t.Exchange, t.Base, t.Quote = exchanges[p/symbols], fmt.Sprintf("SYM%02d", p%symbols), "USDT"
		if t.Symbol = t.Base + "USDT"; t.Exchange == "okx" {
			t.Symbol = t.Base + "-USDT"
		}
		t.Timestamp = int64(i) // rewritten per pass
		t.Price.SetFinite(price, -4)
		t.Bid.SetFinite(price-1, -4)
		t.Ask.SetFinite(price+1, -4)
		t.Open24h.SetFinite(int64(100_000+10_000*(p%symbols)), -4)
		t.Volume.SetFinite(12345, -2)
	}
	return out
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
			pub := &testkit.CountingPublisher{}
			s, err := New(sinks.Env{Name: "risk", Metrics: prometheus.NewRegistry(), Publisher: pub}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Connect(context.Background()); err != nil {
				b.Fatal(err)
			}
			testkit.RunBatches(b, benchTicks(100_000), 500, func(batch []tick.Tick) error { return s.WriteBatch(context.Background(), batch) })
			b.ReportMetric(float64(pub.Count())/float64(b.N)*1e6, "alerts/Mtick")
		})
	}
}

// BenchmarkBaselineDecode is the raw baseline for the same run: decoding
// the same ticks from their JSON, the work the runtime does for every sink
// before WriteBatch. One op is one tick.
func BenchmarkBaselineDecode(b *testing.B) { testkit.BenchDecode(b, benchTicks(1000)) }
