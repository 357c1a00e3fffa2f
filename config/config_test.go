package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/binance"
	"github.com/tickflow/tickflow/ingest/sim"
	"github.com/tickflow/tickflow/sinks"
)

// A stand-in registration for the cache sink: config only needs a spec with
// settings to decode, and importing the real sink would pull in Redis.
type testCacheConfig struct {
	TTL   time.Duration `yaml:"ttl"`
	Redis struct {
		Addrs []string `yaml:"addrs"`
	} `yaml:"redis"`
}

func (c *testCacheConfig) Validate() error {
	if c.TTL <= 0 {
		return errors.New("ttl: must be > 0")
	}
	return nil
}

// testRegs are this test's own registries: the stand-in cache sink and the
// real source specs, registered into nothing global.
func testRegs() Registries {
	r := Registries{Sinks: sinks.NewRegistry(), Sources: ingest.NewRegistry()}
	r.Sinks.Register(sinks.Spec{
		Name:   "cache",
		Batch:  sinks.BatchPolicy{Size: 100, MaxWait: 10 * time.Millisecond},
		Config: func() any { return &testCacheConfig{TTL: time.Hour} },
		New:    func(sinks.Env, any) (sinks.Sink, error) { return nil, errors.New("not used") },
	})
	r.Sources.Register(binance.Spec())
	r.Sources.Register(sim.Spec())
	return r
}

func parse(yaml string, getenv func(string) string) (Config, error) {
	return ParseWith([]byte(yaml), getenv, testRegs())
}

const full = `
ingest:
  binance:
    enabled: true
    url: wss://stream.binance.com:9443
    symbols: [BTCUSDT, ETHUSDT]
bus:
  brokers: []
  listen: 127.0.0.1:9092
  data_dir: ./data/kafka
  topic: market_data.ticks
  partitions: 12
sinks:
  cache:    {enabled: true, ttl: 30m, batch: {size: 7, max_wait: 3ms}}
  store:    {enabled: true}
  push:     {enabled: false}
  strategy: {enabled: true}
  risk:     {enabled: true}
api:
  listen: 127.0.0.1:8080
`

func noEnv(string) string { return "" }

func TestParseFull(t *testing.T) {
	cfg, err := parse(full, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cfg.Source("binance")
	if !ok || !b.Enabled {
		t.Fatalf("binance entry %+v", b)
	}
	bc := b.Settings.(*binance.Config)
	if got := bc.Symbols; len(got) != 2 || got[1] != "ETHUSDT" {
		t.Fatalf("symbols %v", got)
	}
	if bc.StaleAfter != 60*time.Second {
		t.Fatalf("default stale_after not kept: %v", bc.StaleAfter)
	}
	if s, ok := cfg.Source("sim"); !ok || s.Enabled || s.Settings.(*sim.Config).Interval != 250*time.Millisecond {
		t.Fatalf("sim entry %+v, want it present, disabled, with its defaults", s)
	}
	c, ok := cfg.Sink("cache")
	if !ok || !c.Enabled || !c.Available || c.Batch.Size != 7 || c.Batch.MaxWait != 3*time.Millisecond {
		t.Fatalf("cache entry %+v", c)
	}
	if s := c.Settings.(*testCacheConfig); s.TTL != 30*time.Minute {
		t.Fatalf("cache ttl %v", s.TTL)
	}
	st, ok := cfg.Sink("store")
	if !ok || !st.Enabled {
		t.Fatalf("store entry %+v", st)
	}
	if p, _ := cfg.Sink("push"); p.Enabled {
		t.Fatal("push should be disabled")
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := parse("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bus.Topic != "market_data.ticks" || cfg.Bus.Partitions != 12 || cfg.API.Listen != "127.0.0.1:8080" {
		t.Fatalf("defaults %+v", cfg.Bus)
	}
	if cfg.Ingest.Queue != 4096 {
		t.Fatalf("queue %d", cfg.Ingest.Queue)
	}
	// Every registered source is listed, enabled as its spec says.
	var got []string
	for _, s := range cfg.Ingest.Sources {
		got = append(got, fmt.Sprintf("%s=%v", s.Name, s.Enabled))
	}
	if strings.Join(got, " ") != "binance=true sim=false" {
		t.Fatalf("sources %v", got)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{
		"TICKFLOW_BUS_BROKERS":       "k1:9092, k2:9092",
		"TICKFLOW_BUS_SASL_USERNAME": "u",
		"TICKFLOW_API_LISTEN":        "0.0.0.0:9000",
		"TICKFLOW_CACHE_REDIS_ADDRS": "r1:6379,r2:6379",
		"TICKFLOW_BINANCE_URL":       "ws://127.0.0.1:1",
	}
	cfg, err := parse(full, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Bus.Brokers, ",") != "k1:9092,k2:9092" || cfg.API.Listen != "0.0.0.0:9000" || cfg.Bus.SASL.Username != "u" {
		t.Fatalf("overrides not applied: %+v %+v", cfg.Bus, cfg.API)
	}
	c, _ := cfg.Sink("cache")
	if got := c.Settings.(*testCacheConfig).Redis.Addrs; strings.Join(got, ",") != "r1:6379,r2:6379" {
		t.Fatalf("cache addrs %v", got)
	}
	// The source's spec declares its own override.
	if b, _ := cfg.Source("binance"); b.Settings.(*binance.Config).URL != "ws://127.0.0.1:1" {
		t.Fatalf("binance url %q", b.Settings.(*binance.Config).URL)
	}
	// An override for a section the file does not have creates it.
	cfg, err = parse("api: {listen: 'x:1'}", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.API.Listen != "0.0.0.0:9000" {
		t.Fatalf("listen %q", cfg.API.Listen)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "bogus: 1", "field bogus not found"},
		{"unknown nested key", "bus: {topik: x}", "field topik not found"},
		{"bad duration", "ingest: {binance: {stale_after: 5 parsecs}}", "stale_after"},
		{"bad duration in batch", "sinks: {cache: {enabled: true, batch: {size: 1, max_wait: soon}}}", "sinks.cache: batch"},
		{"negative min_interval", "sinks: {cache: {enabled: true, batch: {min_interval: -1s}}}", "min_interval must be >= 0"},
		{"unknown compression", "bus: {compression: brotli}", `bus.compression: compression "brotli" is not none, lz4`},
		{"empty symbols", "ingest: {binance: {enabled: true, symbols: []}}", "ingest.binance.symbols: empty"},
		{"empty sim symbols", "ingest: {sim: {enabled: true, symbols: []}}", "ingest.sim.symbols: empty"},
		{"duplicate symbol", "ingest: {binance: {symbols: [BTCUSDT, btcusdt]}}", "listed twice"},
		{"bad symbol", "ingest: {binance: {symbols: ['BTC/USDT']}}", `bad symbol "BTC/USDT"`},
		{"unknown sink", "sinks: {cache: {enabled: true}, redis: {enabled: true}}", "sinks.redis: unknown sink"},
		{"unknown sink setting", "sinks: {cache: {enabled: true, tll: 1h}}", "sinks.cache: field tll not found"},
		{"sink validate", "sinks: {cache: {enabled: true, ttl: 0s}}", "sinks.cache: ttl: must be > 0"},
		{"zero batch size", "sinks: {cache: {enabled: true, batch: {size: 0}}}", "sinks.cache: batch: size must be > 0"},
		{"sink not a mapping", "sinks: {cache: 5}", "sinks.cache: must be a mapping"},
		{"bad url", "ingest: {binance: {url: 'http://x'}}", "ingest.binance.url"},
		{"too many streams per conn", "ingest: {binance: {streams_per_conn: 2000}}", "1..1024"},
		{"lifetime past 24h", "ingest: {binance: {max_lifetime: 25h}}", "24h"},
		{"no partitions", "bus: {partitions: 0}", "bus.partitions"},
		{"partitions past int32", "bus: {partitions: 4294967297}", "bus.partitions"},
		{"replication past int16", "bus: {replication: 65537}", "bus.replication"},
		{"replication zero", "bus: {replication: 0}", "bus.replication"},
		{"embedded without data dir", "bus: {data_dir: ''}", "bus.data_dir"},
		{"bad broker", "bus: {brokers: [localhost]}", "not host:port"},
		{"bad sasl", "bus: {sasl: {mechanism: GSSAPI}}", "bus.sasl.mechanism"},
		{"bad log level", "log: {level: loud}", "log.level"},
		{"instance id with a space", "bus: {instance_id: 'a b'}", `bus.instance_id: "a b"`},
		{"instance id too long", "bus: {instance_id: " + strings.Repeat("x", 101) + "}", "bus.instance_id"},
		{"session timeout too short", "bus: {session_timeout: 500ms}", "bus.session_timeout: must be 1s..30m"},
		{"rebalance timeout zero", "bus: {rebalance_timeout: 0s}", "bus.rebalance_timeout: must be 1s..30m"},
		{"unknown source", "ingest: {kraken: {enabled: true}}", "ingest.kraken: unknown source (known: binance, sim)"},
		{"unknown source setting", "ingest: {binance: {urll: x}}", "ingest.binance: field urll not found"},
		{"source not a mapping", "ingest: {sim: 5}", "ingest.sim: must be a mapping"},
		{"ingest not a mapping", "ingest: 5", "ingest: must be a mapping"},
		{"bad queue", "ingest: {queue: 0}", "ingest.queue: must be > 0"},
		{"queue not a number", "ingest: {queue: lots}", "ingest.queue"},
		{"source enabled not bool", "ingest: {sim: {enabled: maybe}}", "ingest.sim: enabled"},
		{"bad sim interval", "ingest: {sim: {enabled: true, interval: 0s}}", "ingest.sim.interval: must be > 0"},
		{"not yaml", "ingest: [", "yaml"},
		{"enabled not bool", "sinks: {cache: {enabled: maybe}}", "sinks.cache: enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.yaml, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestUnregisteredKnownSinkIsAcceptedButUnavailable(t *testing.T) {
	cfg, err := parse("sinks: {risk: {enabled: true, anything: 1}}", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cfg.Sink("risk")
	if r.Available || !r.Enabled {
		t.Fatalf("risk entry %+v", r)
	}
}

// A disabled source's settings are decoded (unknown keys are still errors)
// but not validated, like a sink's.
func TestDisabledSourceIsNotValidated(t *testing.T) {
	cfg, err := parse("ingest: {binance: {enabled: false, symbols: []}}", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := cfg.Source("binance"); b.Enabled {
		t.Fatal("binance enabled")
	}
}

// The package-level Parse reads the Default registries; a test registry
// never leaks into them.
func TestParseUsesDefaultRegistries(t *testing.T) {
	const doc = "sinks: {cache: {enabled: true, ttl: 30m}}"
	if _, err := ParseWith([]byte(doc), noEnv, testRegs()); err != nil {
		t.Fatal(err)
	}
	if _, ok := sinks.Lookup("cache"); ok {
		t.Fatal("the test's cache spec reached sinks.Default")
	}
	// No sink package is compiled into this test, so against Default the
	// cache is known but not available.
	cfg, err := Parse([]byte(doc), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := cfg.Sink("cache"); c.Available || c.Settings != nil {
		t.Fatalf("cache entry %+v", c)
	}
}

func TestQualify(t *testing.T) {
	for _, tc := range []struct{ prefix, err, want string }{
		{"ingest.binance", "symbols: empty", "ingest.binance.symbols: empty"},
		{"ingest.binance", "backoff.min: too small", "ingest.binance.backoff.min: too small"},
		{"ingest.binance", "Bad thing: happened", "ingest.binance: Bad thing: happened"},
		{"ingest.binance", "no key here", "ingest.binance: no key here"},
		{"", "symbols: empty", "symbols: empty"},
	} {
		if got := qualify(tc.prefix, errors.New(tc.err)).Error(); got != tc.want {
			t.Errorf("qualify(%q, %q) = %q, want %q", tc.prefix, tc.err, got, tc.want)
		}
	}
}

// The instance id defaults to <hostname>-<api port>, made safe for a group
// name; set in the file or the environment, it is taken as given.
func TestInstanceID(t *testing.T) {
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "web 1.example", nil }
	for _, tc := range []struct{ yaml, env, want string }{
		{"", "", "web_1.example-8080"},
		{"api: {listen: '0.0.0.0:9001'}", "", "web_1.example-9001"},
		{"bus: {instance_id: push-a}", "", "push-a"},
		{"bus: {instance_id: push-a}", "push-b", "push-b"},
	} {
		cfg, err := parse(tc.yaml, func(k string) string {
			if k == "TICKFLOW_BUS_INSTANCE_ID" {
				return tc.env
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Bus.InstanceID != tc.want {
			t.Errorf("%q env %q: instance id %q, want %q", tc.yaml, tc.env, cfg.Bus.InstanceID, tc.want)
		}
	}
	cfg, err := parse("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bus.PartitionsSet {
		t.Error("an empty file sets bus.partitions")
	}
	if cfg, err := parse("bus: {partitions: 24}", noEnv); err != nil || !cfg.Bus.PartitionsSet {
		t.Errorf("bus.partitions in the file: set %v, err %v", cfg.Bus.PartitionsSet, err)
	}
	if cfg.Bus.SessionTimeout != 45*time.Second || cfg.Bus.RebalanceTimeout != time.Minute {
		t.Errorf("timeouts %s %s", cfg.Bus.SessionTimeout, cfg.Bus.RebalanceTimeout)
	}
}
