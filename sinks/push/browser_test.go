package push_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/chromedp/chromedp"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/api"
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
