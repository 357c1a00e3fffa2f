package cache_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/tick"
)

const topic = "market_data.ticks"

// startBroker starts an embedded broker with topic (4 partitions) and a
// producer onto it, both closed when the test ends.
func startBroker(ctx context.Context, t *testing.T, topic string) (bus.ClientConfig, *bus.Producer) {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	if err := bus.EnsureTopic(ctx, cc, topic, 4, -1); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close(context.Background()) })
	return cc, prod
}

// Ticks go through the embedded broker and the sink runtime into Redis.
// The test then kills Redis: the API answers from the store, or 503 when
// there is none; batches fail and are retried, not committed. After a
// restart the sink catches up and nothing is missing.
func TestEndToEndThroughBrokerWithRedisOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	redis := testsvc.StartRedis(t)
	admin := rawClient(t, redis.Addr())

	cc, prod := startBroker(ctx, t, topic)

	// Build the sink the way main does: through its registered spec.
	spec, ok := sinks.Lookup("cache")
	if !ok {
		t.Fatal("cache sink not registered")
	}
	cfg := spec.Config().(*cache.Config)
	cfg.Redis.Addrs = []string{redis.Addr()}
	reg := prometheus.NewRegistry()
	sk, err := spec.New(sinks.Env{Name: "cache", Metrics: reg}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink := sk.(*cache.Sink)
	hr := health.New()
	rt, err := bus.NewRuntime(bus.RuntimeConfig{
		Client: cc, Topic: topic, Group: "tickflow.cache", Name: "cache", Sink: sink,
		Batch: spec.Batch, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Health: hr,
	})
	if err != nil {
		t.Fatal(err)
	}
	rtCtx, stopRT := context.WithCancel(ctx)
	rtDone := make(chan error, 1)
	go func() { rtDone <- rt.Run(rtCtx) }()
	t.Cleanup(func() {
		stopRT()
		if err := <-rtDone; err != nil {
			t.Errorf("runtime: %v", err)
		}
		_ = sink.Close(context.Background())
	})

	store := &historyFake{}
	produce := func(ts ...tick.Tick) {
		t.Helper()
		for i := range ts {
			if err := prod.Produce(ctx, &ts[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		store.add(ts...)
	}

	// 1500 ticks of one pair, shuffled so batches arrive out of order,
	// then the first 700 again as a replay; two more pairs besides.
	const base = int64(1_767_000_000_000)
	var btc []tick.Tick
	for i := range int64(1500) {
		btc = append(btc, mk("binance", "BTCUSDT", base+i*10, fmt.Sprintf("%d.%02d", 50000+i, i%100)))
	}
	shuffled := append([]tick.Tick(nil), btc...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	produce(shuffled...)
	produce(shuffled[:700]...)
	produce(mk("okx", "ETHUSDT", base+5, "3000.1"), mk("binance", "ETHUSDT", base+7, "3000.2"))
	sent := 1500 + 700 + 2
	testkit.Eventually(t, 30*time.Second, "the sink to store every produced tick", func() bool {
		return testkit.Metric(reg, "tickflow_cache_ticks_written_total") >= float64(sent)
	})

	newest := btc[len(btc)-1]
	checkPair(t, admin, newest, btc[len(btc)-1000:])
	for _, key := range []string{"market_data:tick:binance:BTCUSDT", "market_data:tick_history:binance:BTCUSDT",
		"market_data:tick:okx:ETHUSDT", "market_data:tick_history:binance:ETHUSDT"} {
		pttl, err := admin.Do(ctx, admin.B().Pttl().Key(key).Build()).AsInt64()
		if err != nil || pttl <= 0 || pttl > time.Hour.Milliseconds() {
			t.Errorf("%s: PTTL %d ms (err %v), want in (0, 1h]", key, pttl, err)
		}
	}

	withStore := api.New(api.Options{Cache: sink, History: store})
	cacheOnly := api.New(api.Options{Cache: sink})
	if src, tk := getTick(t, withStore, 200); src != "cache" || tk.Timestamp != newest.Timestamp {
		t.Errorf("before the outage: source %q ts %d", src, tk.Timestamp)
	}

	redis.Stop()
	// rueidis drops its client-side cache when it sees the connection
	// die, a moment after the kill; until then it serves what Redis held.
	testkit.Eventually(t, 5*time.Second, "reads to fall back to the store", func() bool {
		src, tk := getTick(t, withStore, 200)
		return src == "store" && tk.Timestamp == newest.Timestamp
	})
	getTick(t, cacheOnly, 503)
	if err := sink.Ready(ctx); err == nil {
		t.Error("sink Ready with Redis down")
	}

	// Ticks produced during the outage wait in Kafka: the runtime retries
	// the failing batch and commits nothing.
	var during []tick.Tick
	for i := range int64(300) {
		during = append(during, mk("binance", "BTCUSDT", base+15_000+i*10, fmt.Sprintf("%d", 60000+i)))
	}
	during = append(during, mk("kraken", "XBTUSD", base+20_000, "61000.5"))
	produce(during...)
	testkit.Eventually(t, 10*time.Second, "batches to fail against the dead Redis", func() bool {
		return testkit.Metric(reg, "tickflow_cache_batch_errors_total") >= 2
	})
	if _, ready := hr.Snapshot(ctx); ready {
		t.Error("/readyz reports ready while the cache sink's batches fail")
	}

	redis.Restart()
	sent += len(during)
	testkit.Eventually(t, 30*time.Second, "the sink to catch up after the restart", func() bool {
		return testkit.Metric(reg, "tickflow_cache_ticks_written_total") >= float64(sent)
	})
	all := append(append([]tick.Tick(nil), btc...), during[:300]...)
	checkPair(t, admin, all[len(all)-1], all[len(all)-1000:])
	checkPair(t, admin, during[300], during[300:])
	if src, tk := getTick(t, cacheOnly, 200); src != "cache" || tk.Timestamp != all[len(all)-1].Timestamp {
		t.Errorf("after the restart: source %q ts %d", src, tk.Timestamp)
	}
	testkit.Eventually(t, 10*time.Second, "/readyz to recover", func() bool { _, ready := hr.Snapshot(ctx); return ready })
}

// checkPair asserts Redis holds latest as the pair's latest tick and
// exactly want (any order) as its history.
func checkPair(t *testing.T, c rueidis.Client, latest tick.Tick, want []tick.Tick) {
	t.Helper()
	ctx := context.Background()
	p := latest.Pair()
	got, err := c.Do(ctx, c.B().Get().Key("market_data:tick:"+p.String()).Build()).ToString()
	if err != nil || got != string(latest.AppendJSON(nil)) {
		t.Errorf("%s latest = %s (err %v), want %s", p, got, err, latest.AppendJSON(nil))
	}
	members, err := c.Do(ctx, c.B().Zrange().Key("market_data:tick_history:"+p.String()).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	wantM := make([]string, len(want))
	for i := range want {
		wantM[i] = string(want[i].AppendJSON(nil))
	}
	sort.Strings(wantM)
	sort.Strings(members)
	if len(members) != len(wantM) {
		t.Fatalf("%s history has %d members, want %d", p, len(members), len(wantM))
	}
	for i := range members {
		if members[i] != wantM[i] {
			t.Fatalf("%s history differs at %d: %s, want %s", p, i, members[i], wantM[i])
		}
	}
}

func getTick(t *testing.T, s *api.Server, status int) (source string, tk tick.Tick) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/tick/binance/btcusdt", nil))
	if rec.Code != status {
		t.Fatalf("GET tick: %d %s, want %d", rec.Code, rec.Body, status)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatal(err)
	}
	if status == 200 {
		if err := tick.Unmarshal(env.Data, &tk); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Header().Get(api.SourceHeader), tk
}

// historyFake stands in for the store layer: every tick produced, answered
// by the api.TickHistory contract.
type historyFake struct {
	mu    sync.Mutex
	ticks []tick.Tick
}

func (h *historyFake) add(ts ...tick.Tick) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ticks = append(h.ticks, ts...)
}

func (h *historyFake) LatestTick(ctx context.Context, ex, sym string) (tick.Tick, bool, error) {
	ts, err := h.Ticks(ctx, api.TickQuery{Exchange: ex, Symbol: sym, Limit: 1})
	if err != nil || len(ts) == 0 {
		return tick.Tick{}, false, err
	}
	return ts[0], true, nil
}

func (h *historyFake) Ticks(_ context.Context, q api.TickQuery) ([]tick.Tick, error) {
	if q.Limit <= 0 {
		return nil, errors.New("limit required")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[int64]bool{}
	var out []tick.Tick
	for _, t := range h.ticks {
		if t.Exchange == q.Exchange && t.Symbol == q.Symbol && !seen[t.Timestamp] &&
			(q.Before == 0 || t.Timestamp < q.Before) {
			seen[t.Timestamp] = true
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Timestamp > out[j].Timestamp })
	return out[:min(len(out), q.Limit)], nil
}

func mk(ex, sym string, ts int64, price string) tick.Tick {
	return tick.Tick{Exchange: ex, Symbol: sym, Timestamp: ts, Price: tick.MustDecimal(price),
		Volume: tick.MustDecimal("12.5"), Bid: tick.MustDecimal(price), Ask: tick.MustDecimal(price), ReceivedAt: ts*1000 + 7}
}

func rawClient(t testing.TB, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("redis client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// The sink serves the API's cache layer without importing api; this guard
// keeps the method sets in step.
var _ api.TickCache = (*cache.Cache)(nil)
