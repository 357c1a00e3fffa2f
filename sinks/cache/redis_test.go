package cache

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func redisHarness(t *testing.T, srv *testsvc.Redis, mod func(*Config)) *harness {
	t.Helper()
	cfg := *DefaultConfig()
	cfg.Redis.Addrs = []string{srv.Addr()}
	if mod != nil {
		mod(&cfg)
	}
	return newHarness(t, cfg, clock.Real)
}

// The keys are exactly the seed's layout, with the TTLs the issue asks.
func TestRedisKeyLayout(t *testing.T) {
	srv := testsvc.StartRedis(t)
	admin := rawClient(t, srv.Addr())
	h := redisHarness(t, srv, nil)
	ctx := context.Background()
	a, b := mk("binance", "BTCUSDT", 2000, "50100.00"), mk("binance", "BTCUSDT", 1000, "50000.10")
	write(t, h, a, b)

	got, err := admin.Do(ctx, admin.B().Get().Key("market_data:tick:binance:BTCUSDT").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	if want := string(a.AppendJSON(nil)); got != want {
		t.Errorf("latest key = %s, want %s", got, want)
	}
	for _, key := range []string{"market_data:tick:binance:BTCUSDT", "market_data:tick_history:binance:BTCUSDT", "market_data:pairs"} {
		pttl, err := admin.Do(ctx, admin.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if pttl <= 0 || pttl > time.Hour.Milliseconds() {
			t.Errorf("%s PTTL = %d ms, want in (0, 1h]", key, pttl)
		}
	}
	zs, err := admin.Do(ctx, admin.B().Zrange().Key("market_data:tick_history:binance:BTCUSDT").Min("0").Max("-1").Withscores().Build()).AsZScores()
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 2 || zs[0].Score != 1000 || zs[0].Member != string(b.AppendJSON(nil)) || zs[1].Score != 2000 {
		t.Errorf("history set = %+v, want the two ticks' JSON scored by event time", zs)
	}
	members, err := admin.Do(ctx, admin.B().Zrange().Key("market_data:pairs").Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil || len(members) != 1 || members[0] != "binance:BTCUSDT" {
		t.Errorf("pairs index = %v %v", members, err)
	}
	// The pair's candles: one hash, living for candle_retention.
	const ck = "market_data:candles_1m:binance:BTCUSDT"
	hm, err := admin.Do(ctx, admin.B().Hgetall().Key(ck).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0": "50000.10 1000 1000042 50100.00 2000 2000042 50000.10 1000 1000042 50100.00 2000 2000042 2",
		"w": "2000042 2000", "first": "0", "newest": "0", "oldest": "0"}
	if fmt.Sprint(hm) != fmt.Sprint(want) {
		t.Errorf("candle hash = %v, want %v", hm, want)
	}
	pttl, err := admin.Do(ctx, admin.B().Pttl().Key(ck).Build()).AsInt64()
	if err != nil || pttl <= time.Hour.Milliseconds() || pttl > DefaultCandleRetention.Milliseconds() {
		t.Errorf("%s PTTL = %d ms (%v), want in (1h, 24h]", ck, pttl, err)
	}
}

// A hot read is served from process memory, and Redis's invalidation
// keeps it correct when another client writes the key.
func TestRedisClientSideCachingIsInvalidated(t *testing.T) {
	srv := testsvc.StartRedis(t)
	other := rawClient(t, srv.Addr())
	// A long client TTL, so only server-assisted invalidation can make
	// the new value visible within the test's deadline.
	h := redisHarness(t, srv, func(c *Config) { c.Redis.ClientCacheTTL = time.Hour })
	ctx := context.Background()
	write(t, h, mk("binance", "BTCUSDT", 1000, "1"))
	wantLatest(t, h, "binance", "BTCUSDT", 1000, "1")

	rb := h.sink.be.Load().backend.(*redisBackend)
	res := rb.c.DoCache(ctx, rb.c.B().Get().Key("market_data:tick:binance:BTCUSDT").Cache(), time.Hour)
	if res.Error() != nil || !res.IsCacheHit() {
		t.Fatalf("the read after Latest was not a client-cache hit (err %v): client-side caching is off", res.Error())
	}

	newer := mk("binance", "BTCUSDT", 2000, "2")
	if err := other.Do(ctx, other.B().Set().Key("market_data:tick:binance:BTCUSDT").Value(string(newer.AppendJSON(nil))).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Second, "the cached latest tick to be invalidated", func() bool {
		got, _, err := h.sink.Latest(ctx, "binance", "BTCUSDT")
		return err == nil && got.Timestamp == 2000
	})
}

// Redis forgetting its scripts (SCRIPT FLUSH, a restart without
// persistence, a failover) costs one reload, not a failed batch.
func TestRedisScriptFlushIsRecovered(t *testing.T) {
	srv := testsvc.StartRedis(t)
	admin := rawClient(t, srv.Addr())
	h := redisHarness(t, srv, nil)
	ctx := context.Background()
	write(t, h, mk("binance", "BTCUSDT", 5000, "5"))
	if err := admin.Do(ctx, admin.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	write(t, h, mk("binance", "BTCUSDT", 3000, "3"), mk("binance", "ETHUSDT", 1000, "1"))
	wantLatest(t, h, "binance", "BTCUSDT", 5000, "5")
	wantLatest(t, h, "binance", "ETHUSDT", 1000, "1")
	wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 5000, 3000)
}

// Killing Redis fails batches (so the runtime retries and does not
// commit), shows on Ready, and is logged once per change; after a restart
// the same batch goes through and nothing acknowledged earlier is lost.
func TestRedisOutage(t *testing.T) {
	srv := testsvc.StartRedis(t)
	h := redisHarness(t, srv, nil)
	ctx := context.Background()
	write(t, h, mk("binance", "BTCUSDT", 1000, "1"))
	if err := h.sink.Ready(ctx); err != nil {
		t.Fatalf("Ready before the outage: %v", err)
	}

	srv.Stop()
	batch := []tick.Tick{mk("binance", "BTCUSDT", 2000, "2"), mk("binance", "BTCUSDT", 3000, "3")}
	for i := range 3 {
		if err := h.sink.WriteBatch(ctx, batch); err == nil {
			t.Fatalf("attempt %d: WriteBatch succeeded with Redis down", i)
		}
	}
	if err := h.sink.Ready(ctx); err == nil {
		t.Error("Ready = nil with Redis down")
	}
	if _, _, err := h.sink.Latest(ctx, "binance", "BTCUSDT"); err == nil {
		t.Error("Latest answered with Redis down; the API could not fall back")
	}
	if n := h.logs.count("cache: backend unavailable; batches will be retried"); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if up := metric(t, h.reg, "tickflow_cache_backend_up"); up != 0 {
		t.Errorf("backend_up = %v during the outage", up)
	}

	srv.Restart()
	// The runtime retries the failed batch; so do we, until rueidis has
	// reconnected.
	testkit.Eventually(t, 10*time.Second, "the retried batch to succeed", func() bool { return h.sink.WriteBatch(ctx, batch) == nil })
	if err := h.sink.Ready(ctx); err != nil {
		t.Errorf("Ready after restart: %v", err)
	}
	wantLatest(t, h, "binance", "BTCUSDT", 3000, "3")
	wantHistory(t, h, tick.Query{Exchange: "binance", Symbol: "BTCUSDT", Limit: 10}, 3000, 2000, 1000)
	if n := h.logs.count("cache: backend available again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	if up := metric(t, h.reg, "tickflow_cache_backend_up"); up != 1 {
		t.Errorf("backend_up = %v after recovery", up)
	}
}

// With no server, Connect fails (the runtime retries it) and reads report
// an error rather than "not found", so the API falls back.
func TestRedisConnectFailure(t *testing.T) {
	cfg := *DefaultConfig()
	cfg.Redis.Addrs = []string{testsvc.Addr(testsvc.FreePort(t))}
	s, err := New(sinks.Env{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err == nil {
		t.Fatal("Connect succeeded with no server")
	}
	if _, _, err := s.Latest(ctx, "binance", "BTCUSDT"); !errors.Is(err, sinks.ErrNotConnected) {
		t.Errorf("Latest before a connection: err = %v, want ErrNotConnected", err)
	}
	if err := s.WriteBatch(ctx, []tick.Tick{mk("binance", "BTCUSDT", 1, "1")}); !errors.Is(err, sinks.ErrNotConnected) {
		t.Errorf("WriteBatch before a connection: err = %v, want ErrNotConnected", err)
	}
	if err := s.Ready(ctx); err == nil {
		t.Error("Ready = nil before a connection")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"default", func(*Config) {}, ""},
		{"ttl", func(c *Config) { c.TTL = 0 }, "ttl: must be > 0, got 0s"},
		{"history zero", func(c *Config) { c.History = 0 }, "history: must be in 1..100000, got 0"},
		{"history huge", func(c *Config) { c.History = MaxHistory + 1 }, "history: must be in 1..100000, got 100001"},
		{"addr", func(c *Config) { c.Redis.Addrs = []string{"localhost"} }, `redis.addrs: "localhost" is not host:port`},
		{"db negative", func(c *Config) { c.Redis.DB = -1 }, "redis.db: must be >= 0, got -1"},
		{"db on cluster", func(c *Config) { c.Redis.Addrs = []string{"a:1", "b:2"}; c.Redis.DB = 2 }, "redis.db: 2 with several addrs (a cluster only has db 0)"},
		{"candles off", func(c *Config) { c.CandleRetention = 0 }, ""},
		{"candle retention too long", func(c *Config) { c.CandleRetention = MaxCandleRetention + time.Minute },
			"candle_retention: must be whole minutes in 0..168h0m0s (0 keeps no candles), got 168h1m0s"},
		{"client cache ttl", func(c *Config) { c.Redis.ClientCacheTTL = -time.Second }, "redis.client_cache_ttl: must be >= 0 (0 disables it), got -1s"},
	} {
		cfg := DefaultConfig()
		c.mod(cfg)
		err := cfg.Validate()
		if got := errString(err); got != c.err {
			t.Errorf("%s: Validate() = %q, want %q", c.name, got, c.err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
