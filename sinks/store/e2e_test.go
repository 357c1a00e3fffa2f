package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

const e2eTopic = "market_data.ticks"

// pipeline is the embedded broker with the tick topic and a producer.
type pipeline struct {
	cc   bus.ClientConfig
	prod *bus.Producer
}

func startPipeline(t testing.TB, partitions int32) *pipeline {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopic(ctx, cc, e2eTopic, partitions, -1); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: e2eTopic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close(context.Background()) })
	return &pipeline{cc: cc, prod: prod}
}

func (p *pipeline) produce(t testing.TB, ts []tick.Tick) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range ts {
		if err := p.prod.Produce(ctx, &ts[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// runtime runs a sink under the bus runtime until stopped; stop waits for
// its final commit.
type runtime struct {
	stop func()
	done chan error
	reg  *prometheus.Registry
	hr   *health.Registry
}

func (p *pipeline) run(t testing.TB, sink sinks.Sink, batch sinks.BatchPolicy, clk clock.Clock) *runtime {
	return p.runGroup(t, "tickflow.store", sink, batch, clk)
}

func (p *pipeline) runGroup(t testing.TB, group string, sink sinks.Sink, batch sinks.BatchPolicy, clk clock.Clock) *runtime {
	t.Helper()
	r := &runtime{done: make(chan error, 1), reg: prometheus.NewRegistry(), hr: health.New()}
	rt, err := bus.NewRuntime(bus.RuntimeConfig{
		Client: p.cc, Topic: e2eTopic, Group: group, Name: "store", Sink: sink, Batch: batch, Clock: clk,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Metrics: bus.NewRuntimeMetrics(r.reg), Health: r.hr,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.done <- rt.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-r.done; err != nil {
				t.Errorf("runtime: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

var e2ePairs = []tick.Pair{
	{Exchange: "binance", Symbol: "BTCUSDT"}, {Exchange: "okx", Symbol: "ETH-USDT"}, {Exchange: "sim", Symbol: "SIM1"},
}

// genTicks makes n ticks over three pairs with random exact decimals: up
// to 18 places and up to 20 integer digits.
func genTicks(n int, seed uint64) []tick.Tick {
	rng := rand.New(rand.NewPCG(seed, 7))
	pairs := e2ePairs
	dec := func(intMax uint64, places int) apd.Decimal {
		frac := rng.Uint64N(1e18) / pow10u64[18-places]
		return tick.MustDecimal(fmt.Sprintf("%d.%0*d", rng.Uint64N(intMax), places, frac))
	}
	out := make([]tick.Tick, n)
	base := int64(1_767_000_000_000)
	for i := range out {
		p := pairs[i%len(pairs)]
		ts := base + int64(i)*37
		out[i] = tick.Tick{Exchange: p.Exchange, Symbol: p.Symbol, Timestamp: ts, ReceivedAt: ts*1000 + int64(i%997),
			Price: dec(100_000, 1+i%18), Volume: dec(1e19, 8), Bid: dec(100_000, 8), Ask: dec(100_000, 8),
			Open24h: dec(100_000, 2), High24h: dec(100_000, 18), Low24h: dec(10, 18), QuoteVolume: dec(1e19, 18)}
	}
	return out
}

// visible is every tick the API's tick query returns for the pairs in
// want, keyed by identity; it fails the test on a tick seen twice.
func visible(t *testing.T, s *Sink, want []tick.Tick) (map[[2]int64]tick.Tick, error) {
	t.Helper()
	pairs := map[tick.Pair]bool{}
	for i := range want {
		pairs[want[i].Pair()] = true
	}
	got := map[[2]int64]tick.Tick{}
	for p := range pairs {
		ts, err := s.Ticks(bg(t), tick.Query{Exchange: p.Exchange, Symbol: p.Symbol, Limit: maxTickLimit})
		if err != nil {
			return nil, err
		}
		for _, tk := range ts {
			k := [2]int64{tk.Timestamp, tk.ReceivedAt}
			if _, dup := got[k]; dup {
				t.Fatalf("tick %s@%d visible twice", tk.Key(), tk.Timestamp)
			}
			got[k] = tk
		}
	}
	return got, nil
}

// checkExactlyOnce: every produced tick is visible once, equal to the
// digit, and nothing else is.
func checkExactlyOnce(t *testing.T, s *Sink, want []tick.Tick) {
	t.Helper()
	got, err := visible(t, s, want)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d ticks visible, want %d", len(got), len(want))
	}
	for i := range want {
		g, ok := got[[2]int64{want[i].Timestamp, want[i].ReceivedAt}]
		if !ok {
			t.Fatalf("tick %s@%d missing", want[i].Key(), want[i].Timestamp)
		}
		if err := sameTick(&g, &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	// The candle counts, the other query the API runs, agree.
	var total uint64
	for _, p := range e2ePairs {
		cs, err := s.Candles(bg(t), tick.CandleQuery{Exchange: p.Exchange, Symbol: p.Symbol, Interval: time.Hour,
			From: time.UnixMilli(1_767_000_000_000 - time.Hour.Milliseconds()), To: time.UnixMilli(1_767_000_000_000 + 2*time.Hour.Milliseconds())})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			total += c.Ticks
		}
	}
	if total != uint64(len(want)) {
		t.Fatalf("candles count %d ticks, want %d", total, len(want))
	}
}

func visibleCount(t *testing.T, s *Sink, want []tick.Tick) int {
	got, err := visible(t, s, want)
	if err != nil {
		return -1 // the server is away; the caller keeps polling
	}
	return len(got)
}

// newE2ESink builds the sink through its registered spec, as main does.
func newE2ESink(t testing.TB, rawURL, db string) *Sink {
	t.Helper()
	spec, ok := sinks.Lookup("store")
	if !ok {
		t.Fatal("store not registered")
	}
	cfg := spec.Config().(*Config)
	cfg.ClickHouse.URL, cfg.ClickHouse.Database = rawURL, db
	cfg.ClickHouse.Timeout = 5 * time.Second
	env, _ := testEnv(nil)
	sk, err := spec.New(env, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sk.(*Sink)
}

// TestEndToEndExactlyN: N ticks through the broker and the runtime land as
// exactly N visible rows, every decimal exact.
func TestEndToEndExactlyN(t *testing.T) {
	ch := clickHouse(t)
	p := startPipeline(t, 4)
	s := newE2ESink(t, ch.HTTPURL(), testDB(t))
	reader := newE2ESink(t, ch.HTTPURL(), testDB(t)) // the API's view, outliving the runtime
	want := genTicks(3000, 1)
	p.produce(t, want)
	rt := p.run(t, s, sinks.BatchPolicy{Size: 1000, MaxWait: 50 * time.Millisecond}, nil)
	testkit.Eventually(t, 30*time.Second, "3000 ticks visible", func() bool { return visibleCount(t, reader, want) == len(want) })
	rt.stop()
	checkExactlyOnce(t, reader, want)
	if got := sql(t, ch, "SELECT count() FROM "+testDB(t)+".market_ticks"); got != "3000" {
		t.Fatalf("rows %s, want 3000 (no replay happened, so no copies either)", got)
	}
}

// TestEndToEndBatchPolicy: with an injected clock, the runtime hands the
// sink full 1000-tick batches at once, and the remainder only when the
// 5 s wait passes; each batch is one INSERT.
func TestEndToEndBatchPolicy(t *testing.T) {
	ch := clickHouse(t)
	p := startPipeline(t, 1) // one partition: the lag gauge then says when all is polled
	s := newE2ESink(t, ch.HTTPURL(), testDB(t))
	ct := &countingTransport{transport: s.tr}
	s.tr = ct
	want := genTicks(2500, 2)
	p.produce(t, want)
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	// The default's slow-feed rule (min 1000 or max_wait 5 s) with the
	// ceiling lowered to 1000, so the backlog produced up front is cut at
	// 1000 rather than taken whole (bus tests cover growth).
	spec, _ := sinks.Lookup("store")
	policy := spec.Batch
	policy.Size = 1000
	rt := p.run(t, s, policy, clk)
	testkit.Eventually(t, 30*time.Second, "two full batches", func() bool { return len(ct.counts()) >= 2 })
	// Everything has been polled (lag 0) and a batch timer is pending, yet
	// the 500 in hand wait for the clock.
	testkit.Eventually(t, 30*time.Second, "the rest polled", func() bool {
		return gauge(rt.reg, "tickflow_sink_consumer_lag") == 0 && clk.Pending() > 0
	})
	if got := ct.counts(); fmt.Sprint(got) != "[1000 1000]" {
		t.Fatalf("inserts before the wait passed: %v, want [1000 1000]", got)
	}
	clk.Advance(5 * time.Second)
	testkit.Eventually(t, 30*time.Second, "the timed flush", func() bool { return len(ct.counts()) == 3 })
	if got := ct.counts(); fmt.Sprint(got) != "[1000 1000 500]" {
		t.Fatalf("inserts %v, want [1000 1000 500]", got)
	}
	rt.stop()
	checkExactlyOnce(t, newE2ESink(t, ch.HTTPURL(), testDB(t)), want)
}

// TestEndToEndClickHouseKilled kills the real server mid-stream: batches
// fail and are retried, not committed; after a restart every tick is
// visible exactly once.
func TestEndToEndClickHouseKilled(t *testing.T) {
	clickHouse(t) // the skip rule
	ch := testsvc.StartClickHouse(t)
	p := startPipeline(t, 4)
	s := newE2ESink(t, ch.HTTPURL(), "killed")
	reader := newE2ESink(t, ch.HTTPURL(), "killed")
	want := genTicks(3000, 3)
	rt := p.run(t, s, sinks.BatchPolicy{Size: 200, MaxWait: 20 * time.Millisecond}, nil)

	p.produce(t, want[:1000])
	testkit.Eventually(t, 30*time.Second, "the first 1000", func() bool { return visibleCount(t, reader, want[:1000]) == 1000 })
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	p.produce(t, want[1000:2000])
	testkit.Eventually(t, 30*time.Second, "the runtime to see the outage", func() bool {
		all, _ := rt.hr.Snapshot(bg(t))
		for _, st := range all {
			if st.Component == "sink:store" && !st.Ready {
				return true
			}
		}
		return false
	})
	if err := s.Ready(bg(t)); err == nil {
		t.Fatal("sink ready while ClickHouse is down")
	}
	if err := ch.Start(); err != nil {
		t.Fatal(err)
	}
	p.produce(t, want[2000:])
	testkit.Eventually(t, 60*time.Second, "all 3000 after the restart", func() bool { return visibleCount(t, reader, want) == len(want) })
	rt.stop()
	checkExactlyOnce(t, reader, want)
}

// crashingSink lets its n-th batch reach ClickHouse, then dies before the
// runtime can mark it: the process is gone between the insert and the
// commit. Every later call fails, as a dead process would.
type crashingSink struct {
	*Sink
	after   int
	n       int
	crashed atomic.Bool
	crash   func()
}

var errCrashed = errors.New("sink process crashed (test)")

func (c *crashingSink) WriteBatch(ctx context.Context, b []tick.Tick) error {
	if c.crashed.Load() {
		return errCrashed
	}
	if err := c.Sink.WriteBatch(ctx, b); err != nil {
		return err
	}
	if c.n++; c.n == c.after {
		c.crashed.Store(true)
		c.crash()
		return errCrashed
	}
	return nil
}

// TestEndToEndCrashBetweenInsertAndCommit: the replay after the crash
// writes the last batch again; no query the API runs sees a copy.
func TestEndToEndCrashBetweenInsertAndCommit(t *testing.T) {
	ch := clickHouse(t)
	db := testDB(t)
	p := startPipeline(t, 2)
	want := genTicks(2000, 4)
	p.produce(t, want)
	first := newE2ESink(t, ch.HTTPURL(), db)
	if err := first.Connect(bg(t)); err != nil {
		t.Fatal(err)
	}
	// Merges would collapse the copies and let the test pass without
	// the reads doing their part; hold them.
	sql(t, ch, "SYSTEM STOP MERGES "+db+".market_ticks")
	crashing := &crashingSink{Sink: first, after: 3}
	var rt *runtime
	crashed := make(chan struct{})
	crashing.crash = func() { close(crashed) }
	batch := sinks.BatchPolicy{Size: 300, MaxWait: 20 * time.Millisecond}
	rt = p.run(t, crashing, batch, nil)
	<-crashed
	rt.stop() // the runtime exits without marking the crashed batch
	rows := sql(t, ch, "SELECT count() FROM "+db+".market_ticks")
	if rows == "0" {
		t.Fatal("nothing inserted before the crash")
	}

	second := newE2ESink(t, ch.HTTPURL(), db)
	rt2 := p.run(t, second, batch, nil)
	reader := newE2ESink(t, ch.HTTPURL(), db)
	testkit.Eventually(t, 30*time.Second, "all 2000 after the replay", func() bool { return visibleCount(t, reader, want) == len(want) })
	rt2.stop()
	var raw int
	fmt.Sscan(sql(t, ch, "SELECT count() FROM "+db+".market_ticks"), &raw)
	if raw <= len(want) {
		t.Fatalf("%d rows on disk: the replay wrote no copies, so the test proves nothing", raw)
	}
	t.Logf("%d rows on disk for %d ticks; each visible once", raw, len(want))
	checkExactlyOnce(t, reader, want)
}

// gauge reads a gauge's value from a registry; -1 when absent.
func gauge(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// textTicks are ticks whose decimals carry trailing zeros and the other
// spellings a Decimal column alone would lose: "0.00" (present, unlike a
// bare zero the codec omits), "-0.00", 18 places, the largest value.
func textTicks() []tick.Tick {
	mk := func(p tick.Pair, ts int64, price, volume, bid, ask, open, high, low, quote string) tick.Tick {
		return tick.Tick{Exchange: p.Exchange, Symbol: p.Symbol, Timestamp: ts, ReceivedAt: ts*1000 + 3,
			Price: tick.MustDecimal(price), Volume: tick.MustDecimal(volume), Bid: tick.MustDecimal(bid), Ask: tick.MustDecimal(ask),
			Open24h: tick.MustDecimal(open), High24h: tick.MustDecimal(high), Low24h: tick.MustDecimal(low), QuoteVolume: tick.MustDecimal(quote)}
	}
	btc, sim := e2ePairs[0], e2ePairs[2]
	const base = 1_767_000_000_000
	return []tick.Tick{
		mk(btc, base, "50099.90", "0.10000000", "1234.5000", "50100", "49000.000000000000000000", "51000.5", "0.00", "99999999999999999999.999999999999999999"),
		mk(btc, base+1000, "50100.00", "1234.5000", "50099.99000000", "50100.01", "49000.0", "51000.50", "-0.00", "0.000000000000000001"),
		mk(sim, base+500, "0.10000000", "1234.5000", "0.1", "1.0", "10", "100.00", "0.000000000000000000", "-1.10"),
		mk(sim, base+1500, "1234.5000", "50100.00", "-0.10000000", "0", "0.0", "7", "0.5000", "12345678901234567890.123456789012345670"),
	}
}

// TestEndToEndDecimalText: ticks with trailing zeros go through the broker
// and the runtime into ClickHouse and come back, through the store's reads
// and through the API's store fallback (no cache), with every decimal as
// it was written: the tick JSON is byte for byte the JSON that was
// produced.
func TestEndToEndDecimalText(t *testing.T) {
	ch := clickHouse(t)
	p := startPipeline(t, 2)
	s := newE2ESink(t, ch.HTTPURL(), testDB(t))
	reader := newE2ESink(t, ch.HTTPURL(), testDB(t))
	want := textTicks()
	p.produce(t, want)
	rt := p.run(t, s, sinks.BatchPolicy{Size: 100, MaxWait: 20 * time.Millisecond}, nil)
	testkit.Eventually(t, 30*time.Second, "every tick visible", func() bool { return visibleCount(t, reader, want) == len(want) })
	rt.stop()
	checkExactlyOnce(t, reader, want)

	srv := api.New(api.Options{History: reader, Candles: reader})
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	for _, pair := range []tick.Pair{e2ePairs[0], e2ePairs[2]} {
		var mine []tick.Tick // newest first, as every read answers
		for i := len(want) - 1; i >= 0; i-- {
			if want[i].Pair() == pair {
				mine = append(mine, want[i])
			}
		}
		latest, found, err := reader.LatestTick(bg(t), pair.Exchange, pair.Symbol)
		if err != nil || !found {
			t.Fatalf("%s: latest %v %v", pair, found, err)
		}
		if err := sameTick(&latest, &mine[0]); err != nil {
			t.Errorf("LatestTick: %v", err)
		}
		page, err := reader.Ticks(bg(t), tick.Query{Exchange: pair.Exchange, Symbol: pair.Symbol})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != len(mine) {
			t.Fatalf("%s: Ticks has %d, want %d", pair, len(page), len(mine))
		}
		for i := range page {
			if err := sameTick(&page[i], &mine[i]); err != nil {
				t.Errorf("Ticks: %v", err)
			}
		}

		rec := get("/api/v1/tick/" + pair.Exchange + "/" + pair.Symbol)
		wantBody := `{"success":true,"data":` + string(mine[0].AppendJSON(nil)) + `}`
		if src := rec.Header().Get(api.SourceHeader); rec.Code != http.StatusOK || src != "store" || rec.Body.String() != wantBody {
			t.Errorf("GET latest %s: %d from %q\n got %s\nwant %s", pair, rec.Code, src, rec.Body, wantBody)
		}
		rec = get("/api/v1/ticks/" + pair.Exchange + "/" + pair.Symbol + "?limit=10")
		var env struct {
			Data struct {
				Ticks  []json.RawMessage `json:"ticks"`
				Source string            `json:"source"`
			} `json:"data"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != http.StatusOK || env.Data.Source != "store" {
			t.Fatalf("GET ticks %s: %d %v: %s", pair, rec.Code, err, rec.Body)
		}
		if len(env.Data.Ticks) != len(mine) {
			t.Fatalf("GET ticks %s: %d ticks, want %d", pair, len(env.Data.Ticks), len(mine))
		}
		for i, raw := range env.Data.Ticks {
			if w := mine[i].AppendJSON(nil); !bytes.Equal(raw, w) {
				t.Errorf("GET ticks %s [%d]:\n got %s\nwant %s", pair, i, raw, w)
			}
		}
	}
	// The decimals the test is about, spelt out, so a change to the
	// codec cannot make both sides drop the zeros alike.
	body := get("/api/v1/tick/binance/BTCUSDT").Body.String()
	for _, s := range []string{`"price":"50100.00"`, `"volume":"1234.5000"`, `"bid":"50099.99000000"`, `"low_24h":"-0.00"`} {
		if !strings.Contains(body, s) {
			t.Errorf("latest tick lacks %s: %s", s, body)
		}
	}
	body = get("/api/v1/ticks/sim/SIM1?limit=10").Body.String()
	for _, s := range []string{`"price":"0.10000000"`, `"price":"1234.5000"`, `"low_24h":"0.000000000000000000"`, `"open_24h":"0.0"`} {
		if !strings.Contains(body, s) {
			t.Errorf("tick page lacks %s: %s", s, body)
		}
	}
}
