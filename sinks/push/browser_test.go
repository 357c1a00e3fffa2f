package push_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest/sim"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/sinks/push"
	"github.com/tickflow/tickflow/tick"
)

// The push sink snapshots from the cache backend (main's Env.Backend
// ("cache") is a *cache.Cache) through this method; keep them in step.
var _ interface {
	Pairs(context.Context) ([]tick.Tick, error)
} = (*cache.Cache)(nil)

// toSinks hands each simulated tick straight to the sinks, standing in for
// the broker (whose path the broker test covers).
type toSinks []sinks.Sink

func (ss toSinks) Enqueue(ctx context.Context, t *tick.Tick) error {
	b := []tick.Tick{*t}
	for _, s := range ss {
		if err := s.WriteBatch(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// A headless Chromium opens the page with the simulated exchange running:
// the table fills, the chart draws the cache's history and then moves with
// live ticks, an alert reaches the side panel, and after the socket drops
// the page says so and reconnects by itself.
func TestBrowserPage(t *testing.T) {
	chromium := testsvc.NeedBinary(t, "chromium", "chromium")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cacheSink, err := cache.New(sinks.Env{Name: "cache"}, *cache.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := push.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	events := &testkit.Follower{}
	pushSink, err := push.New(sinks.Env{Name: "push", Follower: events, Backend: func(name string) (any, bool) {
		return cacheSink, name == "cache"
	}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []sinks.Sink{cacheSink, pushSink} {
		if err := s.Connect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := pushSink.Listen(); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Listen: "127.0.0.1:0", Cache: cacheSink, Push: pushSink})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	feed, err := sim.New(sim.Options{Symbols: []string{"BTCUSDT", "ETHUSDT"}, Interval: 100 * time.Millisecond, Seed: 7, Queue: toSinks{cacheSink, pushSink}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 3)
	go func() { done <- pushSink.Run(ctx) }()
	go func() { done <- srv.Run(ctx) }()
	go func() { done <- feed.Run(ctx) }()
	defer func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}
		_ = pushSink.Close(context.Background())
		_ = cacheSink.Close(context.Background())
	}()
	// Let the cache gather a couple of seconds of history for the chart.
	testkit.Eventually(t, 10*time.Second, "history in the cache", func() bool {
		h, err := cacheSink.History(ctx, tick.Query{Exchange: "sim", Symbol: "BTCUSDT", Limit: 100})
		return err == nil && len(h.Ticks) >= 15
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 800),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	page := "http://" + srv.Addr() + "/"
	if err := chromedp.Do(browser, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	t.Logf("opened %s (push at %s)", page, pushSink.PushURL())

	poll := func(what, expr string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("%s: %v (page status: %s)", what, err, eval[string](t, browser, `JSON.stringify(window.tickflow && window.tickflow.status())`))
		}
	}
	poll("live status", `window.tickflow && window.tickflow.status().kind === 'live'`)
	poll("a price in the table", `window.tickflow.price('sim:BTCUSDT') !== null`)
	eval[chromedp.Void](t, browser, `window.tickflow.select('sim:BTCUSDT')`)
	// The history endpoint gave the chart more than the live ticks could
	// have drawn in the time since the page opened.
	poll("history on the chart", `window.tickflow.selected() === 'sim:BTCUSDT' && window.tickflow.chartPoints() >= 2`)

	price := eval[string](t, browser, `window.tickflow.price('sim:BTCUSDT')`)
	last := eval[float64](t, browser, `window.tickflow.chartLast().time`)
	start := time.Now()
	poll("the price cell to change", fmt.Sprintf(`window.tickflow.price('sim:BTCUSDT') !== %q`, price))
	poll("the chart to move on", fmt.Sprintf(`window.tickflow.chartLast().time > %v`, last))
	t.Logf("price cell and chart updated within %s", time.Since(start).Round(time.Millisecond))
	// The chart's newest point is the price the table shows (or a newer one
	// that arrived in between; both come from the same ticks).
	poll("chart and table agree", `window.tickflow.chartLast().value === Number(window.tickflow.price('sim:BTCUSDT'))`)

	testkit.Eventually(t, 10*time.Second, "push following the alert topic", func() bool { return events.Following(alert.Topic) == 1 })
	events.Send(alert.Topic, "sim:BTCUSDT", []byte(`{"id":"t1","rule":"volatility","status":"firing","severity":"critical",`+
		`"exchange":"sim","symbol":"BTCUSDT","timestamp":`+fmt.Sprint(time.Now().UnixMilli())+`,"message":"BTCUSDT moved 5% in 1m"}`))
	poll("the alert in the side panel", `[...document.querySelectorAll('#events li')].some(li => li.textContent.includes('BTCUSDT moved 5% in 1m'))`)

	shot, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("TICKFLOW_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "push-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes; set TICKFLOW_ARTIFACTS=dir or use go test -artifacts to keep it)", path, len(shot))

	// The socket drops: the page says so, then reconnects and goes on.
	ticks := eval[float64](t, browser, `window.tickflow.counters.ticks`)
	eval[chromedp.Void](t, browser, `window.tickflow.disconnect()`)
	poll("the reconnecting status", `window.tickflow.status().kind === 'reconnecting' && window.tickflow.status().text.includes('reconnecting in')`)
	poll("live again", `window.tickflow.status().kind === 'live'`)
	poll("ticks after reconnecting", fmt.Sprintf(`window.tickflow.counters.ticks > %v`, ticks+3))
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// switchURL is the API's view of the push feed while push restarts on
// another port.
type switchURL struct{ url atomic.Value }

func (s *switchURL) PushURL() string { u, _ := s.url.Load().(string); return u }

// pushNode is one push process under the bus runtime.
type pushNode struct {
	sink *push.Sink
	reg  *prometheus.Registry
	stop func()
}

func startPushNode(t *testing.T, cc bus.ClientConfig, group string) *pushNode {
	t.Helper()
	cfg := push.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	s, err := push.New(sinks.Env{Name: "push", Metrics: reg, Follower: bus.Follower{Client: cc}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Run(sctx) }()
	spec, _ := sinks.Lookup("push")
	rt, err := bus.NewRuntime(bus.RuntimeConfig{Client: cc, Topic: "market_data.ticks", Group: group, Name: "push", Sink: s,
		Batch: spec.Batch, CommitInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() { consumed <- rt.Run(rctx) }()
	var once sync.Once
	n := &pushNode{sink: s, reg: reg, stop: func() {
		once.Do(func() {
			rcancel()
			if err := <-consumed; err != nil {
				t.Errorf("runtime: %v", err)
			}
			scancel()
			if err := <-served; err != nil {
				t.Errorf("push: %v", err)
			}
		})
	}}
	t.Cleanup(n.stop)
	testkit.Eventually(t, 10*time.Second, "push serving", func() bool { return s.Ready(context.Background()) == nil })
	return n
}

// The page resumes: push restarts while ticks keep coming, and the page
// ends up with every tick once (the server replayed what it missed from
// the broker); when the broker no longer holds what it missed, the page
// says so.
func TestBrowserResumes(t *testing.T) {
	chromium := testsvc.NeedBinary(t, "chromium", "chromium")
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs(), ClientID: "push-browser-test"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := bus.EnsureTopic(ctx, cc, "market_data.ticks", 4, -1); err != nil {
		t.Fatal(err)
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks", Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = prod.Close(context.Background()) }()
	seq := int64(0)
	produce := func(n int) {
		t.Helper()
		for range n {
			seq++
			for _, sym := range []string{"BTCUSDT", "ETHUSDT"} {
				tk := tick.Tick{Exchange: "sim", Symbol: sym, Timestamp: time.Now().UnixMilli(), Price: tick.MustDecimal(fmt.Sprint(100 + seq)),
					Bid: tick.MustDecimal("1"), Ask: tick.MustDecimal("2"), Volume: tick.MustDecimal("1")}
				if err := prod.Produce(ctx, &tk); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := prod.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}

	const group = "tickflow.push.browser"
	node := startPushNode(t, cc, group)
	url := &switchURL{}
	url.url.Store(node.sink.PushURL())
	cacheSink, err := cache.New(sinks.Env{Name: "cache"}, *cache.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := cacheSink.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Options{Listen: "127.0.0.1:0", Cache: cacheSink, Push: url})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("api: %v", err)
		}
	}()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()))
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser, chromedp.Navigate("http://"+srv.Addr()+"/")); err != nil {
		t.Fatal(err)
	}
	poll := func(what, expr string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(browser, 30*time.Second)
		defer cancel()
		if _, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("%s: %v (status %s, ticks %v, notice %q)", what, err, eval[string](t, browser, `JSON.stringify(window.tickflow.status())`),
				eval[float64](t, browser, `window.tickflow.counters.ticks`), eval[string](t, browser, `document.getElementById('notice').textContent`))
		}
	}
	ticksAre := func(n int) {
		t.Helper()
		poll(fmt.Sprintf("%d ticks on the page", n), fmt.Sprintf(`window.tickflow.counters.ticks >= %d`, n))
		// One more tick and exactly one more on the page: nothing came twice.
		produce(1)
		poll(fmt.Sprintf("%d ticks on the page", n+2), fmt.Sprintf(`window.tickflow.counters.ticks >= %d`, n+2))
		if got := eval[float64](t, browser, `window.tickflow.counters.ticks`); got != float64(n+2) {
			t.Fatalf("the page has %v ticks, want exactly %d", got, n+2)
		}
	}
	poll("live", `window.tickflow && window.tickflow.status().kind === 'live'`)
	produce(20)
	ticksAre(40)

	// Push restarts; ticks flow meanwhile; the page resumes.
	node.stop()
	produce(20)
	node = startPushNode(t, cc, group)
	url.url.Store(node.sink.PushURL())
	ticksAre(42 + 40)
	if n := testkit.Metric(node.reg, "tickflow_push_recovered_ticks_total"); n != 40 {
		t.Errorf("the restarted push replayed %v ticks to the page, want the 40 produced while it was down", n)
	}
	if eval[string](t, browser, `document.getElementById('notice').textContent`) != "" {
		t.Errorf("a notice after a complete recovery: %q", eval[string](t, browser, `document.getElementById('notice').textContent`))
	}

	// Down again; what the page missed is trimmed away before it is back.
	node.stop()
	produce(20)
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
	if err != nil {
		t.Fatal(err)
	}
	to := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { to.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	if resp, err := adm.DeleteRecords(ctx, to); err != nil || resp.Error() != nil {
		t.Fatalf("trim: %v %v", err, resp.Error())
	}
	node = startPushNode(t, cc, group)
	url.url.Store(node.sink.PushURL())
	poll("the gap notice", `document.getElementById('notice').textContent.includes('reconnected with a gap')`)
	if n := testkit.Metric(node.reg, "tickflow_push_recoveries_total", "result", "trimmed"); n != 1 {
		t.Errorf("recoveries{trimmed} = %v, want 1", n)
	}
}
