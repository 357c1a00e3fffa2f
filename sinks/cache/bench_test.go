package cache

import (
	"context"
	"encoding/csv"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// BenchmarkWriteBatchRedis measures the sink's ticks/s into a real Redis
// (no persistence), one batch at a time as the runtime calls it, in
// batches of the spec's default size. BenchmarkRedisBaseline measures the
// raw pipelined rate of the same server kind in the same run. Each runs
// with the rolling candles off and on, so their cost is an A/B of one run:
//
//	go test -run '^$' -bench 'WriteBatchRedis|RedisBaseline' ./sinks/cache/
func BenchmarkWriteBatchRedis(b *testing.B) {
	srv := testsvc.StartRedis(b, "--appendonly", "no")
	// 500 pairs in a 500-tick batch is one tick per pair: a slow feed
	// over many pairs, where nothing coalesces.
	for _, pairs := range []int{1, 10, 100, 500} {
		for _, candles := range []bool{false, true} {
			b.Run(fmt.Sprintf("pairs=%d/candles=%v", pairs, candles), func(b *testing.B) {
				benchWrite(b, []string{srv.Addr()}, pairs, candles)
			})
		}
	}
}

// BenchmarkWriteBatchMemory is the in-process backend, for comparison.
func BenchmarkWriteBatchMemory(b *testing.B) {
	for _, pairs := range []int{1, 10, 100} {
		for _, candles := range []bool{false, true} {
			b.Run(fmt.Sprintf("pairs=%d/candles=%v", pairs, candles), func(b *testing.B) { benchWrite(b, nil, pairs, candles) })
		}
	}
}

// benchSink is a connected sink on addrs (in process without), with the
// default config changed by set, closed when the benchmark ends. On Redis
// every run starts empty: a watermark or history left by the run before
// would turn this run's records into replays, which cost less.
func benchSink(b *testing.B, addrs []string, set func(*Config)) *Sink {
	b.Helper()
	if len(addrs) > 0 {
		admin := rawClient(b, addrs...)
		if err := admin.Do(context.Background(), admin.B().Flushall().Build()).Error(); err != nil {
			b.Fatal(err)
		}
	}
	cfg := *DefaultConfig()
	cfg.Redis.Addrs = addrs
	set(&cfg)
	s, err := New(sinks.Env{Clock: clock.Real}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(ctx) })
	return s
}

func benchWrite(b *testing.B, addrs []string, pairs int, candles bool) {
	s := benchSink(b, addrs, func(c *Config) {
		if !candles {
			c.CandleRetention = 0
		}
	})
	ctx := context.Background()
	size := 500
	// Pre-built batches with rising event times 10 ms apart, ticks spread
	// round-robin over the pairs, as a backlog looks; after each pass
	// over them every tick moves on by the span of the pass (timer
	// stopped), so each write is of new ticks, not a replay, which the
	// candles would skip cheaply.
	const nBatches = 64
	const step = 10
	batches := make([][]tick.Tick, nBatches)
	ts := int64(1_767_000_000_000)
	for i := range batches {
		batches[i] = make([]tick.Tick, size)
		for j := range batches[i] {
			ts += step
			t := &batches[i][j]
			*t = tick.Tick{Exchange: "binance", Symbol: fmt.Sprintf("SYM%03dUSDT", j%pairs), Timestamp: ts,
				Price: tick.MustDecimal("50123.45"), Volume: tick.MustDecimal("12345.678"),
				Bid: tick.MustDecimal("50123.44"), Ask: tick.MustDecimal("50123.46"),
				Open24h: tick.MustDecimal("49000.01"), High24h: tick.MustDecimal("51000.00"),
				Low24h: tick.MustDecimal("48000.99"), QuoteVolume: tick.MustDecimal("618000000.12"),
				ReceivedAt: ts*1000 + 123}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	written := 0
	span := int64(nBatches * size * step)
	for i := 0; written < b.N; i++ {
		if i > 0 && i%nBatches == 0 {
			b.StopTimer()
			for _, batch := range batches {
				for j := range batch {
					batch[j].Timestamp += span
					batch[j].ReceivedAt += span * 1000
				}
			}
			b.StartTimer()
		}
		batch := batches[i%nBatches]
		if err := s.WriteBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		written += len(batch)
	}
	b.ReportMetric(float64(written)/b.Elapsed().Seconds(), "ticks/s")
}

// BenchmarkRedisBaseline runs redis-benchmark -P 64 for SET (200-byte
// values, about a tick's JSON) and ZADD against a fresh server and reports
// its requests/s. One b.N is one request of each (at least 100 000).
func BenchmarkRedisBaseline(b *testing.B) {
	bin := testsvc.NeedBinary(b, "redis-benchmark", "redis-tools")
	srv := testsvc.StartRedis(b, "--appendonly", "no")
	_, port, _ := strings.Cut(srv.Addr(), ":")
	n := strconv.Itoa(max(b.N, 100_000))
	b.ResetTimer()
	out, err := exec.Command(bin, "-p", port, "-P", "64", "-t", "set,zadd", "-n", n, "-d", "200", "-q", "--csv").Output()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		b.Fatalf("redis-benchmark output: %v\n%s", err, out)
	}
	for _, row := range rows[1:] {
		rps, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			b.Fatalf("redis-benchmark row %v: %v", row, err)
		}
		b.ReportMetric(rps, strings.ToLower(row[0])+"/s")
	}
}

// BenchmarkWriteTradesRedis and BenchmarkWriteTradesMemory measure the
// trade writer's trades/s, one batch at a time as the trade runtime calls
// it, every trade new: the volume buckets and their watermark alone
// (recent=false, trades: 0), and with the recent trades kept too (the
// default), so their cost is an A/B of one run:
//
//	go test -run '^$' -bench 'WriteTrades' ./sinks/cache/
func BenchmarkWriteTradesRedis(b *testing.B) {
	srv := testsvc.StartRedis(b, "--appendonly", "no")
	for _, pairs := range []int{1, 10, 100} {
		for _, recent := range []bool{false, true} {
			b.Run(fmt.Sprintf("pairs=%d/recent=%v", pairs, recent), func(b *testing.B) { benchTrades(b, []string{srv.Addr()}, pairs, recent) })
		}
	}
}

func BenchmarkWriteTradesMemory(b *testing.B) {
	for _, pairs := range []int{1, 10, 100} {
		for _, recent := range []bool{false, true} {
			b.Run(fmt.Sprintf("pairs=%d/recent=%v", pairs, recent), func(b *testing.B) { benchTrades(b, nil, pairs, recent) })
		}
	}
}

func benchTrades(b *testing.B, addrs []string, pairs int, recent bool) {
	s := benchSink(b, addrs, func(c *Config) {
		if !recent {
			c.Trades = 0
		}
	})
	ctx := context.Background()
	w := s.TradeWriter()
	// As benchWrite: pre-built batches, 10 ms apart, three trades a frame
	// (one receive time), moved on after each pass so none is a replay.
	const size, nBatches, step = 500, 64, 10
	batches := make([][]tick.Trade, nBatches)
	ts, id := int64(1_767_000_000_000), 0
	for i := range batches {
		batches[i] = make([]tick.Trade, size)
		for j := range batches[i] {
			if j%3 == 0 {
				ts += step
			}
			id++
			batches[i][j] = tick.Trade{Exchange: "binance", Symbol: fmt.Sprintf("SYM%03dUSDT", j%pairs), Timestamp: ts,
				TradeID: strconv.Itoa(id), Side: tick.Buy, Price: tick.MustDecimal("50123.45"),
				Size: tick.MustDecimal("0.01234567"), ReceivedAt: ts*1000 + 123}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	written := 0
	span := int64(nBatches * size * step)
	for i := 0; written < b.N; i++ {
		if i > 0 && i%nBatches == 0 {
			b.StopTimer()
			for _, batch := range batches {
				for j := range batch {
					batch[j].Timestamp += span
					batch[j].ReceivedAt += span * 1000
				}
			}
			b.StartTimer()
		}
		batch := batches[i%nBatches]
		if err := w.WriteBatch(ctx, batch); err != nil {
			b.Fatal(err)
		}
		written += len(batch)
	}
	b.ReportMetric(float64(written)/b.Elapsed().Seconds(), "trades/s")
}
