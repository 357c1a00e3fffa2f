package cache_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/sinks/cache"
)

// The sink's section decodes strictly through the real config loader,
// with the documented defaults and the environment override for addrs.
func TestConfigThroughLoader(t *testing.T) {
	for _, c := range []struct {
		name string
		yaml string
		env  map[string]string
		want cache.Config
		err  string
	}{
		{
			name: "defaults: in-process backend",
			yaml: "sinks:\n  cache: {enabled: true}\n",
			want: *cache.DefaultConfig(),
		},
		{
			name: "every key",
			yaml: "sinks:\n  cache:\n    enabled: true\n    ttl: 30m\n    history: 500\n    candle_retention: 48h\n    trades: 50\n" +
				"    redis: {addrs: [\"10.0.0.1:6379\"], password: s3cret, db: 2, client_cache_ttl: 10s}\n",
			want: cache.Config{TTL: 30 * time.Minute, History: 500, CandleRetention: 48 * time.Hour, Trades: 50, Redis: cache.RedisConfig{
				Addrs: []string{"10.0.0.1:6379"}, Password: "s3cret", DB: 2, ClientCacheTTL: 10 * time.Second}},
		},
		{
			name: "environment override of the addresses (a cluster)",
			yaml: "sinks:\n  cache: {enabled: true, redis: {addrs: [\"ignored:1\"]}}\n",
			env:  map[string]string{"TICKFLOW_CACHE_REDIS_ADDRS": "r1:6379, r2:6379,r3:6379"},
			want: func() cache.Config {
				c := *cache.DefaultConfig()
				c.Redis.Addrs = []string{"r1:6379", "r2:6379", "r3:6379"}
				return c
			}(),
		},
		{name: "unknown key", yaml: "sinks:\n  cache: {enabled: true, redis: {adrs: [\"a:1\"]}}\n", err: "sinks.cache: redis: field adrs not found"},
		{name: "bad ttl", yaml: "sinks:\n  cache: {enabled: true, ttl: 0s}\n", err: "sinks.cache: ttl: must be > 0"},
		{name: "candles off", yaml: "sinks:\n  cache: {enabled: true, candle_retention: 0s}\n", want: func() cache.Config {
			c := *cache.DefaultConfig()
			c.CandleRetention = 0
			return c
		}()},
		{name: "bad candle retention", yaml: "sinks:\n  cache: {enabled: true, candle_retention: 90s}\n",
			err: "sinks.cache: candle_retention: must be whole minutes in 0..168h0m0s (0 keeps no candles), got 1m30s"},
		{name: "bad trades", yaml: "sinks:\n  cache: {enabled: true, trades: -1}\n",
			err: "sinks.cache: trades: must be in 0..100000 (0 keeps none), got -1"},
		{name: "bad addr", yaml: "sinks:\n  cache: {enabled: true, redis: {addrs: [redis]}}\n", err: `sinks.cache: redis.addrs: "redis" is not host:port`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(c.yaml), func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want it to contain %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, ok := cfg.Sink("cache")
			if !ok || !s.Available || !s.Enabled {
				t.Fatalf("cache sink entry: %+v", s)
			}
			if s.Batch.Size != 50_000 || s.Batch.MaxWait != 20*time.Millisecond {
				t.Errorf("default batch = %+v", s.Batch)
			}
			got, ok := s.Settings.(*cache.Config)
			if !ok {
				t.Fatalf("settings are %T", s.Settings)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("config = %+v, want %+v", *got, c.want)
			}
		})
	}
}
