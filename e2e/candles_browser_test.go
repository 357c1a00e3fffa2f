package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// pageCandle is one candle as the page holds it (window.tickflow.candles)
// and, converted, as the API answers it.
type pageCandle struct {
	Time                   int64 `json:"time"` // bucket start, Unix s
	Open, High, Low, Close string
	Ticks                  uint64 `json:"ticks"`
	Volume                 string `json:"volume,omitempty"`
	Trades                 uint64 `json:"trades,omitempty"`
}

// TestCandlesPageInChromium runs tickflow with no ClickHouse (the embedded
// broker, the in-process cache, push) and a test publisher for ticks,
// trades, alerts and signals. A headless Chromium opens the page: it draws the
// candles the API serves from the cache on open, then moves them on with
// pushed ticks (a tick sent again after a reconnect counted once), and
// marks an alert (from REST) and a signal (from the push feed). At the end the page's candles — count, every OHLC and tick
// count, traded volume, last close — equal the API's answer, at 1m and at
// 5m, the lower pane draws that volume (a bucket without trades blank,
// the live bucket's volume refreshed as trades come), and a
// screenshot of the chart shows rising and falling candles.
func TestCandlesPageInChromium(t *testing.T) {
	rig, publish := startPageRig(t, "candles")
	chromium, base, p := rig.chromium, rig.base, rig.proc
	recv := time.Now().UnixMicro() // receive times rise in publish order, as ingest stamps them
	publishTick := func(ts int64, price string) {
		t.Helper()
		recv++
		tk := tick.Tick{Exchange: "sim", Symbol: "BTCUSDT", Timestamp: ts, ReceivedAt: recv,
			Price: tick.MustDecimal(price), Volume: tick.MustDecimal("1000")}
		tk.Bid, tk.Ask = tk.Price, tk.Price
		publish("market_data.ticks", tk.Key(), tk.AppendJSON(nil))
	}
	tradeID := 0
	publishTrade := func(ts int64, size string) {
		t.Helper()
		recv++
		tradeID++
		tr := tick.Trade{Exchange: "sim", Symbol: "BTCUSDT", TradeID: fmt.Sprint(tradeID), Timestamp: ts, ReceivedAt: recv,
			Side: tick.Buy, Price: tick.MustDecimal("100"), Size: tick.MustDecimal(size)}
		publish("market_data.trades", tr.Key(), tr.AppendJSON(nil))
	}

	// History: six minutes before the current one, rising then falling.
	now := time.Now().UnixMilli()
	cur := now / 60_000 * 60_000
	prices := [][]string{
		{"100.00", "101.50", "100.75"}, {"100.75", "103.25", "102.00"}, {"102.00", "104.10", "103.90", "104.00"},
		{"104.00", "102.10", "101.30"}, {"101.30", "99.80", "100.20", "99.95"}, {"99.95", "100.40", "101.00"},
	}
	for m, ps := range prices {
		for i, price := range ps {
			publishTick(cur-int64(6-m)*60_000+int64(i)*7_000, price)
		}
	}
	// Trades in the first five of those minutes; the sixth has none.
	for m := range 5 {
		for i := range m + 1 {
			publishTrade(cur-int64(6-m)*60_000+int64(i)*5_000+1, fmt.Sprintf("0.%d5", m*3+i))
		}
	}
	alertAt := cur - 4*60_000 + 3_000
	publish(alert.Topic, "sim:BTCUSDT", []byte(fmt.Sprintf(`{"id":"page-a1","rule":"volatility","status":"firing",`+
		`"severity":"critical","exchange":"sim","symbol":"BTCUSDT","timestamp":%d,"message":"BTCUSDT moved 3%% in 1m"}`, alertAt)))
	apiCandles := func(iv string) []pageCandle {
		t.Helper()
		var body struct {
			Data struct {
				Source  string
				Candles []struct {
					Start                  int64
					Open, High, Low, Close string
					Ticks                  uint64
					Volume                 string
					Trades                 uint64
				}
			}
		}
		if err := json.Unmarshal(waitHTTP(t, base+"/api/v1/candles/sim/BTCUSDT?interval="+iv, http.StatusOK), &body); err != nil {
			t.Fatal(err)
		}
		if body.Data.Source != "cache" {
			t.Fatalf("candles served by %q with no store configured, want cache", body.Data.Source)
		}
		out := make([]pageCandle, len(body.Data.Candles))
		for i, k := range body.Data.Candles {
			out[i] = pageCandle{k.Start / 1000, k.Open, k.High, k.Low, k.Close, k.Ticks, k.Volume, k.Trades}
		}
		return out
	}
	testkit.Eventually(t, 20*time.Second, "the history in the cache's candles", func() bool {
		cs := apiCandles("1m")
		return len(cs) == 6 && cs[5].Close == "101.00" && cs[4].Trades == 5
	})

	browser := openChromium(t, chromium)
	if _, err := chromedp.Run(browser, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	poll := func(what, expr string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		if _, err := chromedp.Run(pctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
			t.Fatalf("%s: %v (page: %s)", what, err,
				evalJS[string](t, browser, `JSON.stringify({s: window.tickflow && window.tickflow.status(), c: window.tickflow && window.tickflow.candles(), n: document.getElementById('chart-note').textContent})`))
		}
	}
	poll("live status", `window.tickflow && window.tickflow.status().kind === 'live'`)
	evalJS[chromedp.Void](t, browser, `window.tickflow.select('sim:BTCUSDT')`)
	poll("the history drawn", `window.tickflow.ready() && window.tickflow.selected() === 'sim:BTCUSDT' && window.tickflow.candles().length === 6`)
	if src := evalJS[string](t, browser, `window.tickflow.historySource()`); src != "cache" {
		t.Errorf("page's history source %q, want cache", src)
	}
	if mode := evalJS[string](t, browser, `window.tickflow.lowerMode()`); mode != "volume" {
		t.Errorf("lower pane shows %q with trades counted, want volume", mode)
	}
	poll("the alert marked from REST", `window.tickflow.markers().some(m => m.text === 'volatility' && m.time === `+fmt.Sprint(alertAt/60_000*60)+`)`)

	// Live: ticks in the current minute, pushed to the page, and a signal.
	live := []string{"101.00", "101.80", "100.60", "101.25"}
	for i, price := range live {
		publishTick(now+int64(i), price)
	}
	publish(signal.Topic, "sim:BTCUSDT", []byte(fmt.Sprintf(`{"id":"page-s1","strategy":"t","type":"sma_cross",`+
		`"exchange":"sim","symbol":"BTCUSDT","side":"buy","price":"101.25","reason":"test","timestamp":%d}`, now+3)))
	poll("the live candle", `window.tickflow.candles().length === 7 && window.tickflow.candles()[6].ticks === 4`)
	// Trades of the live minute reach the page by its volume refresh.
	publishTrade(now+1, "2.5")
	publishTrade(now+2, "0.125")
	poll("the live bucket's volume", `window.tickflow.candles()[6].volume === '2.625' && window.tickflow.candles()[6].trades === 2`)
	poll("the signal marked from the push feed", `window.tickflow.markers().some(m => m.text === 'BUY')`)

	// The socket drops and the page resumes from its position: a tick
	// published meanwhile arrives once, and nothing is resent.
	evalJS[chromedp.Void](t, browser, `window.tickflow.disconnect()`)
	publishTick(now+4, "101.30")
	poll("live again", `window.tickflow.status().kind === 'live'`)
	poll("the tick missed while away", `window.tickflow.candles()[6].ticks === 5`)

	// Without a position the push feed's snapshot sends the newest tick
	// again, which must not count twice.
	seen := evalJS[float64](t, browser, `window.tickflow.counters.ticks`)
	evalJS[chromedp.Void](t, browser, `window.tickflow.forget(); window.tickflow.disconnect()`)
	poll("live again", `window.tickflow.status().kind === 'live'`)
	poll("the snapshot after reconnecting", fmt.Sprintf(`window.tickflow.counters.ticks > %v`, seen))
	if n := evalJS[float64](t, browser, `window.tickflow.candles()[6].ticks`); n != 5 {
		t.Errorf("the live candle counts %v ticks after the snapshot resent one, want 5", n)
	}

	for _, iv := range []string{"1m", "5m"} {
		if iv != "1m" {
			evalJS[chromedp.Void](t, browser, `window.tickflow.setInterval('`+iv+`')`)
			poll("the "+iv+" candles", `window.tickflow.ready() && window.tickflow.interval() === '`+iv+`'`)
		}
		got := evalJS[[]pageCandle](t, browser, `window.tickflow.candles()`)
		want := apiCandles(iv)
		if len(got) != len(want) || len(got) == 0 || got[len(got)-1].Close != want[len(want)-1].Close {
			t.Fatalf("%s: page has %d candles, last close %v; API %d, %v", iv, len(got), last(got), len(want), last(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s candle %d: page %+v, API %+v", iv, i, got[i], want[i])
			}
		}
		// The lower pane draws the API's volume, and nothing for a bucket
		// without trades.
		type bar struct {
			Time  int64    `json:"time"`
			Value *float64 `json:"value"`
		}
		bars := evalJS[[]bar](t, browser, `window.tickflow.lowerBars()`)
		if len(bars) != len(want) {
			t.Fatalf("%s: %d bars in the lower pane, %d candles", iv, len(bars), len(want))
		}
		for i, b := range bars {
			var wantV *float64
			if want[i].Volume != "" {
				v := tick.MustDecimal(want[i].Volume)
				f, _ := v.Float64()
				wantV = &f
			}
			if b.Time != want[i].Time || (b.Value == nil) != (wantV == nil) || (b.Value != nil && *b.Value != *wantV) {
				t.Errorf("%s bar %d: %+v (value %v), want time %d volume %q", iv, i, b, b.Value, want[i].Time, want[i].Volume)
			}
		}
		t.Logf("%s: %d candles on the page and from the API, last close %s, volumes %v", iv, len(got), got[len(got)-1].Close, volumes(want))
	}
	evalJS[chromedp.Void](t, browser, `window.tickflow.setInterval('1m')`)
	poll("back to 1m", `window.tickflow.ready() && window.tickflow.interval() === '1m' && window.tickflow.candles().length === 7`)

	// The screenshot of the chart shows candles of both colours.
	shot, err := chromedp.Run(browser, chromedp.Screenshot("#chart"))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	near := func(r, g, b uint32, want [3]uint32) bool {
		d := func(a, b uint32) uint32 {
			if a > b {
				return a - b
			}
			return b - a
		}
		return d(r>>8, want[0])+d(g>>8, want[1])+d(b>>8, want[2]) < 30
	}
	var up, down int
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			switch {
			case near(r, g, b, [3]uint32{0x1f, 0xbf, 0x75}):
				up++
			case near(r, g, b, [3]uint32{0xf0, 0x48, 0x5b}):
				down++
			}
		}
	}
	path := filepath.Join(artifactDir(t), "candles-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %d rising-candle pixels, %d falling", path, up, down)
	if up < 50 || down < 50 {
		t.Errorf("the chart's screenshot has %d rising and %d falling candle pixels, want both drawn", up, down)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func volumes(cs []pageCandle) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Volume
	}
	return out
}

func last(cs []pageCandle) any {
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

// openChromium starts a headless Chromium with the flags that keep it
// off the network (see /work/shared/NOTES.md) and returns its tab.
func openChromium(t *testing.T, bin string) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 800),
	)
	t.Cleanup(cancelAlloc)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(cancelBrowser)
	return browser
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func artifactDir(t *testing.T) string {
	dir := os.Getenv("TICKFLOW_ARTIFACTS")
	if dir == "" {
		dir = t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
