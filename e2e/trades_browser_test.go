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
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/tick"
)

// pageTrade is one row of the page's trades table (window.tickflow.trades).
type pageTrade struct {
	Side, Price, Size, ID string
	SideClass             string `json:"sideClass"`
}

// pageCross is one row of the page's across-exchanges table.
type pageCross struct {
	Exchange, Symbol, Price, Bid, Ask, Vs string
	Cls                                   string `json:"cls"`
}

// TestTradesPageInChromium runs tickflow with the embedded broker, the
// in-process cache, push and the API (no store), and publishes ticks,
// trades and quotes to their topics as ingest would. A headless Chromium
// selects okx BTC-USDT and shows: its trades, first from REST and then
// pushed, newest first with their sides and exact decimals, each once
// though some are delivered twice, never another pair's, at most 50, and
// after a reconnect the one missed meanwhile (from REST); the
// ticker's bid/ask until a quote comes, then the quote; and BTC-USDT on
// binance and okx side by side with their exact prices (not the ETH pair),
// moved on by a pushed tick. A screenshot of the panel is saved.
func TestTradesPageInChromium(t *testing.T) {
	rig, publish := startPageRig(t, "trades")
	chromium, base, p := rig.chromium, rig.base, rig.proc
	recv := time.Now().UnixMicro()
	now := time.Now().UnixMilli()
	publishTick := func(ex, sym, b, q string, ts int64, price, bid, ask string) {
		t.Helper()
		recv++
		tk := tick.Tick{Exchange: ex, Symbol: sym, Base: b, Quote: q, Timestamp: ts, ReceivedAt: recv,
			Price: tick.MustDecimal(price), Volume: tick.MustDecimal("1000"), Bid: tick.MustDecimal(bid), Ask: tick.MustDecimal(ask)}
		publish("market_data.ticks", tk.Key(), tk.AppendJSON(nil))
	}
	type tr struct {
		ex, sym string
		ts      int64
		price   string
		size    string
		side    tick.Side
		id      string
	}
	publishTrade := func(x tr) {
		t.Helper()
		recv++
		td := tick.Trade{Exchange: x.ex, Symbol: x.sym, Base: "BTC", Quote: "USDT", Timestamp: x.ts, ReceivedAt: recv,
			Price: tick.MustDecimal(x.price), Size: tick.MustDecimal(x.size), Side: x.side, TradeID: x.id}
		if err := td.Validate(); err != nil {
			t.Fatalf("test trade %+v: %v", x, err)
		}
		publish(ingest.TradeTopic, td.Key(), td.AppendJSON(nil))
	}
	okx := func(ts int64, price, size string, side tick.Side, id string) tr {
		return tr{"okx", "BTC-USDT", ts, price, size, side, id}
	}

	// Before the page opens: the two exchanges' BTC-USDT, an ETH pair that
	// is another instrument, and three okx trades the page gets by REST.
	publishTick("binance", "BTCUSDT", "BTC", "USDT", now-2000, "97001.10", "97001.00", "97001.20")
	publishTick("kraken", "ETH/USD", "ETH", "USD", now-2000, "3500.5", "3500.4", "3500.6")
	publishTick("okx", "BTC-USDT", "BTC", "USDT", now-1000, "97005.30000", "97005.20000", "97005.40000")
	early := []tr{
		okx(now-900, "97004.90", "0.00100000", tick.Buy, "1001"),
		okx(now-800, "97005.00", "1.5", tick.Sell, "1002"),
		okx(now-700, "97005.30000", "0.25", tick.Buy, "1003"),
	}
	for _, x := range early {
		publishTrade(x)
	}
	testkit.Eventually(t, 20*time.Second, "the REST API lists the three okx trades", func() bool {
		var body struct{ Data []json.RawMessage }
		return json.Unmarshal(waitHTTP(t, base+"/api/v1/trades/okx/BTC-USDT", http.StatusOK), &body) == nil && len(body.Data) == 3
	})
	testkit.Eventually(t, 20*time.Second, "the cache holds the instrument on two exchanges", func() bool {
		var body struct {
			Data struct{ Ticks []json.RawMessage }
		}
		return json.Unmarshal(waitHTTP(t, base+"/api/v1/instruments/BTC-USDT/ticks", http.StatusOK), &body) == nil && len(body.Data.Ticks) == 2
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
			t.Fatalf("%s: %v (page: %s)", what, err, evalJS[string](t, browser, `JSON.stringify(window.tickflow && {s: window.tickflow.status(), sel: window.tickflow.selected(),
				t: window.tickflow.trades(), q: window.tickflow.quote(), x: window.tickflow.cross(), n: window.tickflow.marketCounters,
				note: document.getElementById('trades-note').textContent})`))
		}
	}
	poll("live status", `window.tickflow && window.tickflow.status().kind === 'live'`)
	evalJS[chromedp.Void](t, browser, `window.tickflow.select('okx:BTC-USDT')`)
	poll("the REST trades shown", `window.tickflow.selected() === 'okx:BTC-USDT' && window.tickflow.trades().length === 3`)
	poll("the trade and quote subscription of okx confirmed", `window.tickflow.marketCounters.following === 'okx:BTC-USDT'`)
	wantRows := func(list []tr) []pageTrade {
		out := make([]pageTrade, len(list))
		for i, x := range list {
			out[len(list)-1-i] = pageTrade{Side: string(x.side), Price: x.price, Size: x.size, ID: x.id, SideClass: string(x.side)}
		}
		return out
	}
	checkTrades := func(when string, want []pageTrade) {
		t.Helper()
		got := evalJS[[]pageTrade](t, browser, `window.tickflow.trades()`)
		if len(got) != len(want) {
			t.Fatalf("%s: the page shows %d trades, want %d:\n got %+v\nwant %+v", when, len(got), len(want), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: trade row %d is %+v, want %+v", when, i, got[i], want[i])
			}
		}
	}
	checkTrades("from REST", wantRows(early))

	// The ticker's bid/ask stand in until the exchange sends a quote.
	poll("the ticker's bid/ask", `window.tickflow.quote().text === '97005.20000 / 97005.40000'`)
	if src := evalJS[string](t, browser, `window.tickflow.quote().source`); !strings.Contains(src, "ticker") {
		t.Errorf("quote source %q before any quote, want the ticker named", src)
	}

	// Both exchanges of the instrument, with their exact prices; okx, the
	// selected pair, marked.
	poll("the instrument on two exchanges", `window.tickflow.instrument() === 'BTC-USDT' && window.tickflow.cross().length === 2`)
	cross := evalJS[[]pageCross](t, browser, `window.tickflow.cross()`)
	if c := cross[0]; c.Exchange != "binance" || c.Symbol != "BTCUSDT" || c.Price != "97001.10" || c.Bid != "97001.00" || c.Ask != "97001.20" || c.Vs != "-0.4 bp" {
		t.Errorf("first exchange row %+v, want binance BTCUSDT 97001.10 (97001.00/97001.20), -0.4 bp", c)
	}
	if c := cross[1]; c.Exchange != "okx" || c.Symbol != "BTC-USDT" || c.Price != "97005.30000" || c.Cls != "current" || c.Vs != "—" {
		t.Errorf("second exchange row %+v, want okx BTC-USDT 97005.30000 marked current", c)
	}

	// Live: a new trade, one older than the newest shown (sorted in), the
	// newest REST trade sent again, a trade sent twice, and another pair's
	// trade (not subscribed: never reaches the page).
	live := []tr{
		okx(now-600, "97005.40", "0.01", tick.Sell, "1004"),
		okx(now-850, "97004.95", "2", tick.Sell, "1001b"),
		early[2],
		okx(now-500, "97005.5", "0.30000000", tick.Buy, "1005"),
		okx(now-500, "97005.5", "0.30000000", tick.Buy, "1005"),
	}
	publishTrade(tr{"binance", "BTCUSDT", now - 550, "97001.20", "9", tick.Buy, "b-1"})
	for _, x := range live {
		publishTrade(x)
	}
	poll("the five pushed trades", `window.tickflow.marketCounters.trades === 5`)
	// Frames are handled in order; drawing waits for the next frame.
	poll("the pushed trades drawn", `window.tickflow.trades().length === 6`)
	checkTrades("after the pushed trades", wantRows([]tr{early[0], live[1], early[1], early[2], live[0], live[3]}))
	if n := evalJS[float64](t, browser, `window.tickflow.marketCounters.duplicateTrades`); n != 2 {
		t.Errorf("the page counted %v duplicate trades, want 2 (1003 again and 1005 twice)", n)
	}

	// A quote replaces the ticker's bid/ask, sizes and prices as sent.
	q := tick.Quote{Exchange: "okx", Symbol: "BTC-USDT", Base: "BTC", Quote: "USDT", Timestamp: now - 400, ReceivedAt: recv + 1,
		Bid: tick.MustDecimal("97005.1"), BidSize: tick.MustDecimal("0.250"), Ask: tick.MustDecimal("97005.40"), AskSize: tick.MustDecimal("0.00000100")}
	qv, err := tick.MarshalQuote(&q)
	if err != nil {
		t.Fatal(err)
	}
	publish(tick.QuoteTopic, q.Key(), qv)
	poll("the quote", `window.tickflow.quote().text === '0.250 @ 97005.1 / 97005.40 @ 0.00000100'`)

	// A pushed tick moves the other exchange's row on.
	publishTick("binance", "BTCUSDT", "BTC", "USDT", now-300, "97010.00", "97009.90", "97010.10")
	poll("binance moved on", `window.tickflow.cross()[0].price === '97010.00'`)
	if c := evalJS[[]pageCross](t, browser, `window.tickflow.cross()`)[0]; c.Vs != "+0.5 bp" {
		t.Errorf("binance vs okx %q after the tick, want +0.5 bp", c.Vs)
	}

	// The screenshot, while the panel has a few rows.
	shot, err := chromedp.Run(browser, chromedp.Screenshot("section.market"))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	path := filepath.Join(artifactDir(t), "trades-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %dx%d", path, img.Bounds().Dx(), img.Bounds().Dy())
	page, err := chromedp.Run(browser, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot of the page: %v", err)
	}
	if err := os.WriteFile(filepath.Join(artifactDir(t), "trades-page-full.png"), page, 0o644); err != nil {
		t.Fatal(err)
	}

	// Another pair: its own trades only (the binance one, by REST), and
	// okx's no longer pushed to the page.
	evalJS[chromedp.Void](t, browser, `window.tickflow.select('binance:BTCUSDT')`)
	poll("binance's trades", `window.tickflow.trades().length === 1 && window.tickflow.trades()[0].id === 'b-1'`)
	if c := evalJS[[]pageCross](t, browser, `window.tickflow.cross()`); len(c) != 2 || c[0].Cls != "current" || c[1].Cls != "" {
		t.Errorf("exchange rows %+v after selecting binance, want binance marked current", c)
	}
	poll("the trade and quote subscription of binance confirmed", `window.tickflow.marketCounters.following === 'binance:BTCUSDT'`)
	publishTrade(okx(now-450, "97005.6", "0.5", tick.Sell, "1006"))
	publishTrade(tr{"binance", "BTCUSDT", now - 440, "97010.05", "0.75", tick.Sell, "b-2"})
	poll("binance's pushed trade", `window.tickflow.trades().length === 2 && window.tickflow.trades()[0].id === 'b-2'`)

	// Back to okx, then a reconnect: the trade published while the page
	// was away (not pushed: the trade channel has no resume) comes from
	// REST, with the others, each once.
	evalJS[chromedp.Void](t, browser, `window.tickflow.select('okx:BTC-USDT')`)
	evalJS[chromedp.Void](t, browser, `window.tickflow.disconnect()`)
	poll("the page off line", `window.tickflow.status().kind !== 'live'`)
	away := okx(now-400, "97005.7", "0.6", tick.Buy, "1007")
	publishTrade(away)
	poll("live again", `window.tickflow.status().kind === 'live'`)
	poll("the trade missed while away", `window.tickflow.trades().length === 8 && window.tickflow.trades()[0].id === '1007'`)
	checkTrades("after reconnecting", wantRows([]tr{early[0], live[1], early[1], early[2], live[0], live[3], okx(now-450, "97005.6", "0.5", tick.Sell, "1006"), away}))

	// Bounded: 50 more trades leave the newest 50.
	var more []tr
	for i := range 50 {
		more = append(more, okx(now+int64(i), fmt.Sprintf("97006.%02d", i), "0.1", []tick.Side{tick.Buy, tick.Sell}[i%2], fmt.Sprintf("2%03d", i)))
	}
	for _, x := range more {
		publishTrade(x)
	}
	// One pair's trades are on one partition, so in order: the last drawn means all came.
	poll("the newest drawn", `window.tickflow.trades()[0].id === '2049'`)
	checkTrades("after 50 more", wantRows(more))
	if n := evalJS[float64](t, browser, `window.tickflow.marketCounters.otherTrades`); n != 0 {
		t.Errorf("the page got %v trade frames of pairs it did not follow, want 0", n)
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
