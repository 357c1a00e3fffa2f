package backtest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/backtest"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/replay"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

// benchStrategies: one of each type, on four of the five pairs stored.
const benchStrategies = `
strategies:
  - {name: btc-cross, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "50500", allow_short: true}
  - {name: eth-sma, type: sma_cross, exchange: binance, symbol: ETHUSDT, fast: 20, slow: 50}
  - {name: sol-breakout, type: breakout, exchange: binance, symbol: SOLUSDT, period: 30, bars: 1m}
  - {name: bnb-mom, type: momentum, exchange: binance, symbol: BNBUSDT, window: 1m, threshold: "0.001"}
`

// benchTicks are Binance-like ticks of five pairs, every field set, a
// zig-zag in price so the strategies trade.
func benchTicks(n int) []tick.Tick {
	syms := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"}
	out := make([]tick.Tick, n)
	base := int64(1_767_000_000_000)
	for i := range out {
		ts := base + int64(i)*20
		w := i / len(syms) % 2000
		if w >= 1000 {
			w = 2000 - w
		}
		p := 50000 + w + (i*7919)%13
		out[i] = tick.Tick{Exchange: "binance", Symbol: syms[i%len(syms)], Timestamp: ts, ReceivedAt: ts*1000 + 250,
			Price:       tick.MustDecimal(fmt.Sprintf("%d.%02d", p, i%100)),
			Volume:      tick.MustDecimal(fmt.Sprintf("%d.%08d", 12000+i%900, i%100_000_000)),
			Bid:         tick.MustDecimal(fmt.Sprintf("%d.%02d", p-1, i%100)),
			Ask:         tick.MustDecimal(fmt.Sprintf("%d.%02d", p+1, i%100)),
			Open24h:     tick.MustDecimal(fmt.Sprintf("%d.00", p-100)),
			High24h:     tick.MustDecimal(fmt.Sprintf("%d.50", p+300)),
			Low24h:      tick.MustDecimal(fmt.Sprintf("%d.25", p-400)),
			QuoteVolume: tick.MustDecimal(fmt.Sprintf("%d.%08d", 600_000_000+i, i%100_000_000))}
	}
	return out
}

// BenchmarkBacktest measures, over one range of stored ticks, the rate of
// the raw read (the source's Scan alone, every tick decoded and handed to
// a callback that counts it) beside the rate of tickflow backtest over the
// same Scan (the strategy engine, paper fills, drawdown, equity and price
// points, the report), from ClickHouse and from the embedded broker's log,
// plus the backtest over ticks already in memory (the engine's own cost).
// Cases alternate within every iteration, so other load on the machine
// falls on all alike; each reports its median ticks/s over the iterations.
// Both sources read only the strategies' four pairs of the five stored, as
// the command does by default, and the store is paged by 50 000 ticks, as
// the command pages it.
//
//	go test -run '^$' -bench Backtest -benchtime 5x ./backtest/
func BenchmarkBacktest(b *testing.B) {
	ch := testsvc.StartClickHouse(b)
	ctx := context.Background()
	const n = 300_000
	ticks := benchTicks(n)
	cfgs := store.DefaultConfig()
	cfgs.ClickHouse.URL, cfgs.ClickHouse.Database = ch.HTTPURL(), "bench_backtest"
	sk, err := store.New(sinks.Env{Name: "store"}, *cfgs)
	if err != nil {
		b.Fatal(err)
	}
	if err := sk.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 50_000 {
		if err := sk.WriteBatch(ctx, ticks[i:i+50_000]); err != nil {
			b.Fatal(err)
		}
	}
	_ = sk.Close(ctx)
	h, err := store.Open(sinks.Env{Name: "store"}, *cfgs)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(ctx)

	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	if err := bus.EnsureTopic(ctx, cc, "market_data.ticks", 4, -1); err != nil {
		b.Fatal(err)
	}
	p, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range ticks {
		if err := p.Produce(ctx, &ticks[i]); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}

	cfg := strategy.DefaultConfig()
	if err := yaml.NewDecoder(strings.NewReader(benchStrategies)).Decode(cfg); err != nil {
		b.Fatal(err)
	}
	syms := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"}
	var want int64
	for i := range ticks {
		if slices.Contains(syms, ticks[i].Symbol) {
			want++
		}
	}
	fromStore := replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		return h.Scan(ctx, store.ScanQuery{Exchanges: []string{"binance"}, Symbols: syms, PageSize: 50_000}, fn)
	})
	fromLog := replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		keep := func(t *tick.Tick) bool { return slices.Contains(syms, t.Symbol) }
		_, err := bus.ScanLog(ctx, cc, "market_data.ticks", bus.LogQuery{Keep: keep}, fn)
		return err
	})
	var mem []tick.Tick
	_ = fromStore.Scan(ctx, func(t *tick.Tick) error { mem = append(mem, *t); return nil })
	fromMemory := replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		for i := range mem {
			if err := fn(&mem[i]); err != nil {
				return err
			}
		}
		return nil
	})
	scan := func(src replay.Source) (int64, error) {
		var c int64
		err := src.Scan(ctx, func(*tick.Tick) error { c++; return nil })
		return c, err
	}
	run := func(src replay.Source) (int64, error) {
		rep, _, err := backtest.Run(ctx, cfg, src, backtest.Options{})
		if err != nil {
			return 0, err
		}
		if len(rep.Signals) == 0 {
			return 0, fmt.Errorf("no signals: the bench ticks do not exercise the strategies")
		}
		return rep.Ticks, nil
	}
	cases := []struct {
		name string
		do   func() (int64, error)
	}{
		{"store_scan", func() (int64, error) { return scan(fromStore) }},
		{"store_backtest", func() (int64, error) { return run(fromStore) }},
		{"log_scan", func() (int64, error) { return scan(fromLog) }},
		{"log_backtest", func() (int64, error) { return run(fromLog) }},
		{"memory_backtest", func() (int64, error) { return run(fromMemory) }},
	}
	rates := make([][]float64, len(cases))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for c, cs := range cases {
			start := time.Now()
			got, err := cs.do()
			if err != nil {
				b.Fatalf("%s: %v", cs.name, err)
			}
			if got != want {
				b.Fatalf("%s: %d ticks, want %d", cs.name, got, want)
			}
			rates[c] = append(rates[c], float64(got)/time.Since(start).Seconds())
		}
	}
	b.StopTimer()
	for c, cs := range cases {
		slices.Sort(rates[c])
		b.ReportMetric(rates[c][len(rates[c])/2], cs.name+"_ticks/s")
	}
}
