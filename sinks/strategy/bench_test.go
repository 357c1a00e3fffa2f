package strategy

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// benchTicks is a deterministic random walk over 100 pairs, one tick per
// pair every 100 ms of event time.
func benchTicks(n int) []tick.Tick {
	rng := rand.New(rand.NewSource(1))
	const pairs = 100
	prices := make([]int64, pairs) // in 1e-4 units
	for i := range prices {
		prices[i] = int64(100_000 + 10_000*i)
	}
	out := make([]tick.Tick, n)
	for i := range out {
		p := i % pairs
		prices[p] += prices[p] * int64(rng.Intn(11)-5) / 10_000 // up to ±0.05 %
		t := &out[i]
		t.Exchange, t.Symbol = "binance", fmt.Sprintf("SYM%03dUSDT", p)
		t.Price.SetFinite(prices[p], -4)
		t.Bid.SetFinite(prices[p]-1, -4)
		t.Ask.SetFinite(prices[p]+1, -4)
		t.Volume.SetFinite(12345, -2)
	}
	return out
}

// benchConfig gives every one of the 100 pairs one strategy of each type,
// the SMA and breakout ones on bars ("tick" or a duration).
func benchConfig(b *testing.B, bars string) *Config {
	var sb strings.Builder
	sb.WriteString("strategies:\n")
	for p := 0; p < 100; p++ {
		sym := fmt.Sprintf("SYM%03dUSDT", p)
		level := fmt.Sprintf("%d", 10+p)
		fmt.Fprintf(&sb, "  - {name: cross-%d, type: price_cross, exchange: binance, symbol: %s, level: %q}\n", p, sym, level)
		fmt.Fprintf(&sb, "  - {name: sma-%d, type: sma_cross, exchange: binance, symbol: %s, fast: 5, slow: 20, bars: %s}\n", p, sym, bars)
		fmt.Fprintf(&sb, "  - {name: brk-%d, type: breakout, exchange: binance, symbol: %s, period: 20, bars: %s}\n", p, sym, bars)
		fmt.Fprintf(&sb, "  - {name: mom-%d, type: momentum, exchange: binance, symbol: %s, window: 10s, threshold: \"0.01\"}\n", p, sym)
	}
	c := DefaultConfig()
	if err := yaml.Unmarshal([]byte(sb.String()), c); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkStrategyWriteBatch is the engine's throughput with 400
// strategies (each of the four types on each of 100 pairs), 500-tick
// batches, triggers executed on the worker pool, signals JSON-encoded and
// handed to a publisher that returns at once, paper accounts updated. One
// op is one tick.
func BenchmarkStrategyWriteBatch(b *testing.B) {
	for _, bc := range []struct {
		bars      string
		withState bool
	}{{"tick", false}, {"tick", true}, {"1m", false}, {"1m", true}} {
		name := "bars=" + bc.bars + "/memory"
		if bc.withState {
			name = "bars=" + bc.bars + "/state_dir"
		}
		b.Run(name, func(b *testing.B) {
			cfg := benchConfig(b, bc.bars)
			if bc.withState {
				cfg.StateDir = b.TempDir()
			}
			pub := &testkit.CountingPublisher{}
			s, err := New(sinks.Env{Name: "strategy", Metrics: prometheus.NewRegistry(), Publisher: pub}, cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for !s.pool.running.Load() {
				time.Sleep(time.Millisecond)
			}
			if err := s.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			testkit.RunBatches(b, benchTicks(100_000), 500, func(batch []tick.Tick) error { return s.WriteBatch(ctx, batch) })
			b.ReportMetric(float64(pub.Count())/float64(b.N)*1e6, "signals/Mtick")
		})
	}
}

// BenchmarkBaselineDecode is the raw baseline for the same run: decoding
// the same ticks from their JSON, the work the runtime does for every sink
// before WriteBatch. One op is one tick.
func BenchmarkBaselineDecode(b *testing.B) { testkit.BenchDecode(b, benchTicks(1000)) }
