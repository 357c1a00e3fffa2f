package backtest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// TestPageInChromium opens a page WriteHTML wrote, from a file with no
// network, in headless Chromium: it draws, for every strategy, as many
// price bars as the report's pair has, a marker per trade entry and exit,
// and the equity points; a screenshot is kept as an artifact.
func TestPageInChromium(t *testing.T) {
	chromium := testsvc.NeedBinary(t, "chromium", "chromium")
	var ticks []tick.Tick
	btc := []string{"99", "100", "102", "98", "97", "101", "103", "99.5", "100.5", "104"}
	eth := []string{"9", "10", "11", "9.5", "10.5", "9"}
	for i := 0; i < 240; i++ {
		ticks = append(ticks,
			testkit.TickAt("binance", "BTCUSDT", time.Duration(i)*15*time.Second, btc[i%len(btc)]),
			testkit.TickAt("binance", "ETHUSDT", time.Duration(i)*15*time.Second+time.Millisecond, eth[i%len(eth)]))
	}
	rep, _, err := Run(context.Background(), config(t, crossing), source(ticks), Options{Step: time.Minute, Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backtest.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
		chromedp.WindowSize(1300, 1400),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	if err := chromedp.Do(browser, chromedp.Navigate("file://"+file)); err != nil {
		t.Fatalf("open %s: %v", file, err)
	}
	pctx, pcancel := context.WithTimeout(browser, 20*time.Second)
	defer pcancel()
	if _, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](`document.body.dataset.ready === 'true'`, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		t.Fatalf("the page did not draw: %v", err)
	}
	drawn, err := chromedp.Run(browser, chromedp.Evaluate[string](`JSON.stringify(window.backtestRendered)`))
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Name                  string
		Bars, Markers, Points int
	}
	if err := json.Unmarshal([]byte(drawn), &got); err != nil {
		t.Fatalf("%v: %s", err, drawn)
	}
	if len(got) != len(rep.Strategies) {
		t.Fatalf("drew %d strategies, the report has %d", len(got), len(rep.Strategies))
	}
	for i, s := range rep.Strategies {
		markers := 0
		for _, tr := range s.TradeList {
			markers++
			if !tr.Open {
				markers++
			}
		}
		seconds := map[int64]bool{}
		for _, p := range s.Equity {
			seconds[p.T/1000] = true
		}
		bars := len(rep.Pairs[s.pair].Bars)
		if g := got[i]; g.Name != s.Name || g.Bars != bars || g.Markers != markers || g.Points != len(seconds) || markers < 4 {
			t.Errorf("%s: drew %+v; the report has %d bars, %d trade markers, %d equity seconds", s.Name, g, bars, markers, len(seconds))
		}
	}
	canvases, err := chromedp.Run(browser, chromedp.Evaluate[float64](`document.querySelectorAll('section.strategy canvas').length`))
	if err != nil || canvases < float64(2*len(rep.Strategies)) {
		t.Fatalf("%v canvases (%v): the charts did not render", canvases, err)
	}
	rows, err := chromedp.Run(browser, chromedp.Evaluate[string](`[...document.querySelectorAll('#summary tbody tr td.pnl')].map(td => td.textContent).join(',')`))
	if err != nil || rows != rep.Strategies[0].PnL+","+rep.Strategies[1].PnL {
		t.Fatalf("summary pnl cells %q (%v), want the report's %s,%s", rows, err, rep.Strategies[0].PnL, rep.Strategies[1].PnL)
	}

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
	path := filepath.Join(dir, "backtest-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%s bytes)", path, strconv.Itoa(len(shot)))
}
