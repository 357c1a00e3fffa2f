package cache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// harness is one backend under the shared behavioural suite.
type harness struct {
	sink *Sink
	reg  *prometheus.Registry
	logs *logCounter
	// passTTL makes the configured TTL elapse for the backend.
	passTTL func(t *testing.T)
}

// backendCase is one implementation every behavioural test runs against.
// setup runs once per backend (starting Redis, say) and returns the
// per-test constructor.
type backendCase struct {
	name  string
	setup func(t *testing.T) func(t *testing.T, cfg Config) *harness
}

var backends = []backendCase{
	{name: "memory", setup: func(*testing.T) func(*testing.T, Config) *harness {
		return func(t *testing.T, cfg Config) *harness {
			clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
			h := newHarness(t, cfg, clk)
			h.passTTL = func(*testing.T) { clk.Advance(cfg.TTL + time.Millisecond) }
			return h
		}
	}},
	{name: "redis", setup: func(t *testing.T) func(*testing.T, Config) *harness {
		srv := testsvc.StartRedis(t)
		admin := rawClient(t, srv.Addr())
		return func(t *testing.T, cfg Config) *harness {
			if err := admin.Do(context.Background(), admin.B().Flushall().Build()).Error(); err != nil {
				t.Fatalf("flushall: %v", err)
			}
			cfg.Redis.Addrs = []string{srv.Addr()}
			h := newHarness(t, cfg, clock.Real)
			h.passTTL = func(t *testing.T) {
				// Redis expires by its own clock: wait for the keys to go.
				testkit.Eventually(t, 10*time.Second, "keys to expire", func() bool {
					n, err := admin.Do(context.Background(), admin.B().Dbsize().Build()).AsInt64()
					return err == nil && n == 0
				})
			}
			return h
		}
	}},
	{name: "redis-cluster", setup: func(t *testing.T) func(*testing.T, Config) *harness {
		cl := testsvc.StartRedisCluster(t, 3)
		admin := rawClient(t, cl.Addrs()...)
		if admin.Mode() != rueidis.ClientModeCluster {
			t.Fatalf("client mode %q against a cluster", admin.Mode())
		}
		total := func(cmd func(rueidis.Client) rueidis.Completed) (int64, error) {
			var sum int64
			for _, n := range admin.Nodes() {
				v, err := n.Do(context.Background(), cmd(n)).AsInt64()
				if err != nil {
					return 0, err
				}
				sum += v
			}
			return sum, nil
		}
		return func(t *testing.T, cfg Config) *harness {
			for _, n := range admin.Nodes() {
				if err := n.Do(context.Background(), n.B().Flushall().Build()).Error(); err != nil {
					t.Fatalf("flushall: %v", err)
				}
			}
			cfg.Redis.Addrs = cl.Addrs()
			h := newHarness(t, cfg, clock.Real)
			if m := h.sink.be.Load().backend.(*redisBackend).c.Mode(); m != rueidis.ClientModeCluster {
				t.Fatalf("the sink's client is in %q mode against a cluster", m)
			}
			h.passTTL = func(t *testing.T) {
				testkit.Eventually(t, 10*time.Second, "keys to expire", func() bool {
					n, err := total(func(c rueidis.Client) rueidis.Completed { return c.B().Dbsize().Build() })
					return err == nil && n == 0
				})
			}
			return h
		}
	}},
}

func newHarness(t *testing.T, cfg Config, clk clock.Clock) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &logCounter{}
	s, err := New(sinks.Env{Name: "cache", Logger: slog.New(logs), Metrics: reg, Clock: clk}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	return &harness{sink: s, reg: reg, logs: logs}
}

func TestBackends(t *testing.T) {
	for _, bc := range backends {
		t.Run(bc.name, func(t *testing.T) {
			newH := bc.setup(t)
			for _, tc := range suite {
				t.Run(tc.name, func(t *testing.T) {
					cfg := *DefaultConfig()
					if tc.cfg != nil {
						tc.cfg(&cfg)
					}
					tc.run(t, newH(t, cfg))
				})
			}
		})
	}
}

var suite = []struct {
	name string
	cfg  func(*Config)
	run  func(t *testing.T, h *harness)
}{
	{name: "latest is the newest by event time in an out-of-order batch", run: func(t *testing.T, h *harness) {
		write(t, h, mk("binance", "BTCUSDT", 3000, "3"), mk("binance", "BTCUSDT", 1000, "1"),
			mk("binance", "BTCUSDT", 5000, "5"), mk("binance", "BTCUSDT", 2000, "2"), mk("binance", "BTCUSDT", 4000, "4"))
		wantLatest(t, h, "binance", "BTCUSDT", 5000, "5")
	}},
	{name: "an older batch after a newer one does not move latest", run: func(t *testing.T, h *harness) {
		write(t, h, mk("binance", "BTCUSDT", 10_000, "10"))
		write(t, h, mk("binance", "BTCUSDT", 7000, "7"), mk("binance", "BTCUSDT", 5000, "5"))
		wantLatest(t, h, "binance", "BTCUSDT", 10_000, "10")
		wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 10_000, 7000, 5000)
		if got := metric(t, h.reg, "tickflow_cache_latest_stale_total"); got != 1 {
			t.Errorf("stale counter = %v, want 1", got)
		}
	}},
	{name: "a replayed batch changes nothing", run: func(t *testing.T, h *harness) {
		batch := []tick.Tick{mk("binance", "BTCUSDT", 2000, "2"), mk("binance", "BTCUSDT", 1000, "1"), mk("okx", "ETHUSDT", 1500, "9")}
		write(t, h, batch...)
		write(t, h, batch...)
		write(t, h, batch[1]) // and a single old record replayed on its own
		wantLatest(t, h, "binance", "BTCUSDT", 2000, "2")
		wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 2000, 1000)
		wantHistory(t, h, tick.Query{Exchange: "okx", Symbol: "ETHUSDT", Limit: 10}, 1500)
		if got := metric(t, h.reg, "tickflow_cache_ticks_written_total"); got != 7 {
			t.Errorf("written counter = %v, want 7", got)
		}
	}},
	{name: "an equal event time keeps the first tick as latest", run: func(t *testing.T, h *harness) {
		write(t, h, mk("binance", "BTCUSDT", 5000, "1"), mk("binance", "BTCUSDT", 5000, "2"))
		write(t, h, mk("binance", "BTCUSDT", 5000, "3"))
		wantLatest(t, h, "binance", "BTCUSDT", 5000, "1")
		// Distinct ticks at one instant are distinct history members.
		wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 5000, 5000, 5000)
	}},
	{name: "history keeps the newest N", cfg: func(c *Config) { c.History = 5 }, run: func(t *testing.T, h *harness) {
		var a, b []tick.Tick
		for i := int64(1); i <= 6; i++ {
			a = append(a, mk("binance", "BTCUSDT", (13-i)*1000, "1")) // 12..7 s
			b = append(b, mk("binance", "BTCUSDT", i*1000, "1"))      // 1..6 s
		}
		write(t, h, b...)
		write(t, h, a...)
		ct := wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 100},
			12_000, 11_000, 10_000, 9000)
		// The set is full, so the oldest instant may have been cut: the
		// cache claims only what is after it.
		if ct.Since != 8001 {
			t.Errorf("Since = %d, want 8001", ct.Since)
		}
	}},
	{name: "history honours limit, bounds and cursor, newest first", run: func(t *testing.T, h *harness) {
		var b []tick.Tick
		for i := int64(10); i >= 1; i-- {
			b = append(b, mk("binance", "BTCUSDT", i*1000, fmt.Sprint(i)))
		}
		write(t, h, b...)
		q := func(mod func(*tick.Query)) tick.Query {
			x := tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 100}
			mod(&x)
			return x
		}
		for _, c := range []struct {
			name string
			q    tick.Query
			want []int64
		}{
			{"limit", q(func(x *tick.Query) { x.Limit = 3 }), []int64{10_000, 9000, 8000}},
			{"from-to inclusive", q(func(x *tick.Query) { x.From, x.To = time.UnixMilli(3000), time.UnixMilli(6000) }), []int64{6000, 5000, 4000, 3000}},
			{"before is exclusive", q(func(x *tick.Query) { x.Before, x.Limit = 5000, 2 }), []int64{4000, 3000}},
			{"before and to together", q(func(x *tick.Query) { x.Before, x.To = 9000, time.UnixMilli(4000) }), []int64{4000, 3000, 2000, 1000}},
			{"after everything", q(func(x *tick.Query) { x.From = time.UnixMilli(20_000) }), nil},
		} {
			got, err := h.sink.History(context.Background(), c.q)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if ts := stamps(got.Ticks); fmt.Sprint(ts) != fmt.Sprint(c.want) {
				t.Errorf("%s: got %v, want %v", c.name, ts, c.want)
			}
			if got.Since != 1000 {
				t.Errorf("%s: Since = %d, want 1000 (the set is not full)", c.name, got.Since)
			}
		}
	}},
	{name: "decimals come back exactly as written", run: func(t *testing.T, h *harness) {
		in := mk("binance", "BTCUSDT", 1000, "50100.00")
		in.Volume = tick.MustDecimal("0.00000001")
		in.QuoteVolume = tick.MustDecimal("123456789012345678.123456789")
		write(t, h, in)
		got, _, err := h.sink.Latest(context.Background(), "binance", "BTCUSDT")
		if err != nil {
			t.Fatal(err)
		}
		if g, w := string(got.AppendJSON(nil)), string(in.AppendJSON(nil)); g != w {
			t.Errorf("latest\n got %s\nwant %s", g, w)
		}
		ct, err := h.sink.History(context.Background(), tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 1})
		if err != nil || len(ct.Ticks) != 1 {
			t.Fatalf("history: %v %v", ct, err)
		}
		if g, w := string(ct.Ticks[0].AppendJSON(nil)), string(in.AppendJSON(nil)); g != w {
			t.Errorf("history\n got %s\nwant %s", g, w)
		}
	}},
	{name: "put re-populates but never moves latest back", run: func(t *testing.T, h *harness) {
		ctx := context.Background()
		if err := h.sink.Put(ctx, mk("binance", "BTCUSDT", 5000, "5")); err != nil {
			t.Fatal(err)
		}
		wantLatest(t, h, "binance", "BTCUSDT", 5000, "5")
		write(t, h, mk("binance", "BTCUSDT", 10_000, "10"))
		if err := h.sink.Put(ctx, mk("binance", "BTCUSDT", 7000, "7")); err != nil {
			t.Fatal(err)
		}
		wantLatest(t, h, "binance", "BTCUSDT", 10_000, "10")
		if err := h.sink.Put(ctx, mk("bad:name", "X", 1, "1")); err == nil {
			t.Error("Put accepted an exchange name with ':'")
		}
	}},
	{name: "pairs lists each pair's latest, sorted", run: func(t *testing.T, h *harness) {
		write(t, h, mk("okx", "ETHUSDT", 2000, "2"), mk("binance", "ETHUSDT", 1000, "1"),
			mk("binance", "BTCUSDT", 3000, "3"), mk("binance", "BTCUSDT", 4000, "4"))
		if err := h.sink.Put(context.Background(), mk("sim", "SIMUSD", 9000, "9")); err != nil {
			t.Fatal(err)
		}
		got, err := h.sink.Pairs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, p := range got {
			s = append(s, fmt.Sprintf("%s@%d=%s", p.Key(), p.Timestamp, p.Price.String()))
		}
		want := "[binance:BTCUSDT@4000=4 binance:ETHUSDT@1000=1 okx:ETHUSDT@2000=2 sim:SIMUSD@9000=9]"
		if fmt.Sprint(s) != want {
			t.Errorf("pairs = %v, want %s", s, want)
		}
	}},
	{name: "invalid ticks are dropped and counted, the rest stored", run: func(t *testing.T, h *harness) {
		noPrice := mk("binance", "BTCUSDT", 9000, "1")
		noPrice.Price = tick.Tick{}.Price
		write(t, h, mk("binance", "BTCUSDT", 1000, "1"), noPrice, mk("bin:ance", "BTCUSDT", 2000, "2"),
			mk("binance", "BTC USDT", 2000, "2"))
		wantLatest(t, h, "binance", "BTCUSDT", 1000, "1")
		if got := metric(t, h.reg, "tickflow_cache_ticks_invalid_total"); got != 3 {
			t.Errorf("invalid counter = %v, want 3", got)
		}
		if n := h.logs.count("cache: dropped invalid ticks"); n != 1 {
			t.Errorf("invalid ticks logged %d times for one batch, want once", n)
		}
		if err := h.sink.WriteBatch(context.Background(), []tick.Tick{noPrice}); err != nil {
			t.Errorf("an all-invalid batch must not fail (retrying cannot fix it): %v", err)
		}
	}},
	{name: "a timestamp past 2^53 ms (nanoseconds by mistake) is dropped, not made latest", run: func(t *testing.T, h *harness) {
		// Kept, it would pin latest for a whole TTL (every real tick is
		// "older") and sit in the history as an inexact float score.
		write(t, h, mk("binance", "BTCUSDT", 1000, "1"), mk("binance", "BTCUSDT", 1_767_225_600_000_000_000, "9"))
		write(t, h, mk("binance", "BTCUSDT", 2000, "2"))
		wantLatest(t, h, "binance", "BTCUSDT", 2000, "2")
		if got := metric(t, h.reg, "tickflow_cache_ticks_invalid_total"); got != 1 {
			t.Errorf("invalid counter = %v, want 1", got)
		}
		wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 2000, 1000)
	}},
	{name: "unknown pair is not found, not an error", run: func(t *testing.T, h *harness) {
		_, found, err := h.sink.Latest(context.Background(), "binance", "NOPE")
		if err != nil || found {
			t.Errorf("Latest = found %v, err %v; want not found, nil", found, err)
		}
		ct, err := h.sink.History(context.Background(), tick.Query{Exchange: "binance", Symbol: "NOPE", Limit: 5})
		if err != nil || len(ct.Ticks) != 0 || ct.Since != 0 {
			t.Errorf("History = %+v, %v; want empty with Since 0", ct, err)
		}
	}},
	// Candles live for candle_retention, a minute at least; their expiry
	// is in the candle cases.
	{name: "everything expires after the TTL", cfg: func(c *Config) { c.TTL = 300 * time.Millisecond; c.CandleRetention = 0 }, run: func(t *testing.T, h *harness) {
		write(t, h, mk("binance", "BTCUSDT", 1000, "1"), mk("binance", "BTCUSDT", 2000, "2"))
		wantLatest(t, h, "binance", "BTCUSDT", 2000, "2")
		h.passTTL(t)
		ctx := context.Background()
		if _, found, err := h.sink.Latest(ctx, "binance", "BTCUSDT"); found || err != nil {
			t.Errorf("latest after TTL: found %v err %v", found, err)
		}
		if ct, err := h.sink.History(ctx, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 5}); len(ct.Ticks) != 0 || err != nil {
			t.Errorf("history after TTL: %+v %v", ct, err)
		}
		if ps, err := h.sink.Pairs(ctx); len(ps) != 0 || err != nil {
			t.Errorf("pairs after TTL: %v %v", ps, err)
		}
	}},
}

func mk(ex, sym string, ts int64, price string) tick.Tick {
	return tick.Tick{
		Exchange: ex, Symbol: sym, Timestamp: ts,
		Price: tick.MustDecimal(price), Volume: tick.MustDecimal("1.5"),
		Bid: tick.MustDecimal(price), Ask: tick.MustDecimal(price),
		ReceivedAt: ts*1000 + 42,
	}
}

func write(t *testing.T, h *harness, ticks ...tick.Tick) {
	t.Helper()
	if err := h.sink.WriteBatch(context.Background(), ticks); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

func wantLatest(t *testing.T, h *harness, ex, sym string, ts int64, price string) {
	t.Helper()
	got, found, err := h.sink.Latest(context.Background(), ex, sym)
	if err != nil || !found {
		t.Fatalf("Latest(%s, %s): found %v, err %v", ex, sym, found, err)
	}
	if got.Timestamp != ts || got.Price.String() != price {
		t.Errorf("Latest(%s, %s) = ts %d price %s, want ts %d price %s", ex, sym, got.Timestamp, got.Price.String(), ts, price)
	}
}

func wantHistory(t *testing.T, h *harness, q tick.Query, want ...int64) api.CachedTicks {
	t.Helper()
	got, err := h.sink.History(context.Background(), q)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if fmt.Sprint(stamps(got.Ticks)) != fmt.Sprint(want) {
		t.Errorf("History = %v, want %v", stamps(got.Ticks), want)
	}
	return got
}

func stamps(ts []tick.Tick) []int64 {
	var out []int64
	for _, t := range ts {
		out = append(out, t.Timestamp)
	}
	return out
}

// metric reads a counter or gauge from the test's own registry, as
// /metrics would expose it.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return testkit.Metric(reg, name)
}

func rawClient(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatalf("redis client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// logCounter is a slog handler that counts records by message.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.msgs == nil {
		l.msgs = map[string]int{}
	}
	l.msgs[r.Message]++
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[msg]
}
