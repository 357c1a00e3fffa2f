package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
)

// fakeExchange serves one exchange's documented ticker frames: frame(sym,
// i, ms) for every symbol every few ms, from the first client message on
// (the subscribe), acknowledged by ack when it is set; a frame with
// newlines is several frames. With dropAfter > 0
// the first connection is closed by the server after that many rounds.
func fakeExchange(t *testing.T, syms []string, ack string, dropAfter int, frame func(sym string, i int, ms int64) string) string {
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := conns.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		if _, _, err := c.Read(ctx); err != nil { // the subscribe
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { // the rest: pings, more subscribes
			defer cancel()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		if ack != "" {
			c.Write(ctx, websocket.MessageText, []byte(ack))
		}
		for i := 0; ctx.Err() == nil; i++ {
			if n == 1 && dropAfter > 0 && i == dropAfter {
				c.Close(websocket.StatusGoingAway, "restarting")
				return
			}
			for _, s := range syms {
				for _, f := range strings.Split(frame(s, i, time.Now().UnixMilli()), "\n") {
					if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
						return
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond): // the exchange's pace, not synchronisation
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestFiveExchangesToAPI runs tickflow against local Binance, OKX, Bybit,
// Coinbase and Kraken servers at once, each speaking its documented
// format: every exchange's BTC tick reaches the REST API through the
// broker with the frame's exact decimals.
func TestFiveExchangesToAPI(t *testing.T) {
	binanceURL := "ws" + strings.TrimPrefix(fakeBinance(t).URL, "http")
	okxURL := fakeExchange(t, []string{"BTC-USDT", "ETH-USDT"}, `{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a"}`, 20,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"arg":{"channel":"tickers","instId":%q},"data":[{"instType":"SPOT","instId":%q,"last":"60001.%02d","askPx":"60001.5","bidPx":"60000.5","open24h":"59000","high24h":"61000","low24h":"58000","volCcy24h":"2222.5","vol24h":"37.25","ts":"%d"}]}`, s, s, i%100, ms) +
				fmt.Sprintf("\n"+`{"arg":{"channel":"trades","instId":%q},"data":[{"instId":%q,"tradeId":"%d","px":"60001.%02d","sz":"0.015","side":"sell","ts":"%d","count":"1"}]}`, s, s, i+1, i%100, ms)
		})
	bybitURL := fakeExchange(t, []string{"BTCUSDT", "ETHUSDT"}, `{"success":true,"ret_msg":"subscribe","conn_id":"c","req_id":"sub0","op":"subscribe"}`, 0,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"topic":"tickers.%s","ts":%d,"type":"snapshot","cs":1,"data":{"symbol":%q,"lastPrice":"60002.%02d","highPrice24h":"61000","lowPrice24h":"58000","prevPrice24h":"59000.10","volume24h":"5865.470182","turnover24h":"95949815.680875"}}`, s, ms, s, i%100)
		})
	coinbaseURL := fakeExchange(t, []string{"BTC-USD", "ETH-USD"}, "", 0,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"channel":"ticker","client_id":"","timestamp":%q,"sequence_num":%d,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":%q,"price":"60003.%02d","volume_24_h":"16038.28770938","low_24_h":"58000","high_24_h":"61000","best_bid":"60003.00","best_bid_quantity":"1","best_ask":"60004.00","best_ask_quantity":"2"}]}]}`,
				time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), i, s, i%100)
		})
	krakenURL := fakeExchange(t, []string{"BTC/USD", "ETH/USD"}, `{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true}`, 0,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"channel":"ticker","type":"update","data":[{"symbol":%q,"bid":60004.1,"bid_qty":740.0,"ask":60004.2,"ask_qty":1.5,"last":60004.%02d,"volume":997038.98383185,"low":58000,"high":61000,"change":-0.00017,"timestamp":%q}]}`,
				s, 10+i%90, time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000000Z"))
		})

	dir := t.TempDir()
	busPort, apiPort := testsvc.FreePort(t), testsvc.FreePort(t)
	cfg := fmt.Sprintf(`
ingest:
  binance:  {enabled: true, url: %q, symbols: [BTCUSDT, ETHUSDT]}
  okx:      {enabled: true, url: %q, symbols: [BTC-USDT, ETH-USDT], trades: true}
  bybit:    {enabled: true, url: %q, symbols: [BTCUSDT, ETHUSDT]}
  coinbase: {enabled: true, url: %q, symbols: [BTC-USD, ETH-USD]}
  kraken:   {enabled: true, url: %q, symbols: [BTC/USD, ETH/USD], quotes: true}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 3}
sinks:
  cache: {enabled: true}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, binanceURL, okxURL, bybitURL, coinbaseURL, krakenURL, busPort, filepath.Join(dir, "kafka"), apiPort)
	p := startTickflow(t, dir, cfg)

	for _, tc := range []struct {
		exchange, symbol, pricePrefix, field, value string
	}{
		{"binance", "BTCUSDT", "50100.", "bid", "50099.99"},
		{"okx", "BTC-USDT", "60001.", "quote_volume", "2222.5"},
		{"bybit", "BTCUSDT", "60002.", "open_24h", "59000.10"},
		{"coinbase", "BTC-USD", "60003.", "bid", "60003.00"},
		{"kraken", "BTC/USD", "60004.", "bid", "60004.1"},
	} {
		body := waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/tick/%s/%s", apiPort, tc.exchange, url.PathEscape(tc.symbol)), http.StatusOK)
		var resp struct {
			Success bool
			Data    map[string]any
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		d := resp.Data
		price, _ := d["price"].(string)
		if !resp.Success || d["exchange"] != tc.exchange || d["symbol"] != tc.symbol || !strings.HasPrefix(price, tc.pricePrefix) {
			t.Errorf("%s tick from API: %s", tc.exchange, body)
		}
		if tc.value != "" && d[tc.field] != tc.value {
			t.Errorf("%s %s = %v, want %s (exact from the frame): %s", tc.exchange, tc.field, d[tc.field], tc.value, body)
		}
	}
	ready := string(waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", apiPort), http.StatusOK))
	for _, s := range []string{"binance", "okx", "bybit", "coinbase", "kraken"} {
		if !strings.Contains(ready, `"source:`+s+`"`) {
			t.Errorf("/readyz lacks source:%s: %s", s, ready)
		}
	}
	// OKX's trades: on market_data.trades and the API, exact and taker-sided.
	var trades struct{ Data []map[string]any }
	testkit.Eventually(t, 30*time.Second, "okx trades on the API", func() bool {
		b := waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/trades/okx/BTC-USDT?limit=5", apiPort), http.StatusOK)
		return json.Unmarshal(b, &trades) == nil && len(trades.Data) == 5
	})
	for _, tr := range trades.Data {
		if p, _ := tr["price"].(string); tr["side"] != "sell" || tr["size"] != "0.015" || !strings.HasPrefix(p, "60001.") || tr["trade_id"] == "" {
			t.Errorf("trade %v", tr)
		}
	}

	// Kraken's best bid/ask, from its ticker: on market_data.quotes and the API.
	var quotes struct{ Data []map[string]any }
	testkit.Eventually(t, 30*time.Second, "kraken quotes on the API", func() bool {
		b := waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/quotes/kraken/BTC%%2FUSD?limit=3", apiPort), http.StatusOK)
		return json.Unmarshal(b, &quotes) == nil && len(quotes.Data) == 3
	})
	if q := quotes.Data[0]; q["bid"] != "60004.1" || q["bid_size"] != "740.0" || q["ask"] != "60004.2" || q["ask_size"] != "1.5" || q["symbol"] != "BTC/USD" {
		t.Errorf("quote %v", q)
	}

	// OKX's server dropped the first connection: each pair's gap is data,
	// on the gaps topic and the API.
	var body []byte
	var gaps struct{ Data []map[string]any }
	testkit.Eventually(t, 30*time.Second, "two okx gaps on the API", func() bool {
		body = waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/gaps?exchange=okx", apiPort), http.StatusOK)
		return json.Unmarshal(body, &gaps) == nil && len(gaps.Data) >= 2
	})
	syms := map[any]bool{}
	for _, g := range gaps.Data {
		if g["exchange"] != "okx" || g["reason"] != "reconnect" || g["cause"] != "closed_by_server" || g["from"].(float64) > g["to"].(float64) {
			t.Errorf("gap %v", g)
		}
		syms[g["symbol"]] = true
	}
	if !syms["BTC-USDT"] || !syms["ETH-USDT"] {
		t.Errorf("gaps from the API: %s", body)
	}
	metrics := string(waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", apiPort), http.StatusOK))
	if !strings.Contains(metrics, `tickflow_ingest_gaps_total{exchange="okx",reason="reconnect"} 2`) {
		t.Errorf("/metrics lacks the okx gaps")
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
