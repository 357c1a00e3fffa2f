package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
)

// TestInstrumentsAndStoredTrades runs tickflow against local OKX and Kraken
// servers with the cache on a real Redis and the store on a real
// ClickHouse: every tick leaves the ingest pump with its normalized
// instrument, which the Redis cache keeps in its tick JSON, so GET
// /api/v1/instruments/BTC-USD/ticks finds Kraken's BTC/USD, and OKX's
// trades reach the trades table through the store's own trades runtime
// (group tickflow.store.trades) and come back from the trade history
// endpoint, exact.
func TestInstrumentsAndStoredTrades(t *testing.T) {
	ch := testsvc.StartClickHouse(t)
	redis := testsvc.StartRedis(t)
	okxURL := fakeExchange(t, []string{"BTC-USDT"}, `{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a"}`, 0,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"arg":{"channel":"tickers","instId":%q},"data":[{"instType":"SPOT","instId":%q,"last":"60001.%02d","askPx":"60001.5","bidPx":"60000.5","open24h":"59000","high24h":"61000","low24h":"58000","volCcy24h":"2222.5","vol24h":"37.25","ts":"%d"}]}`, s, s, i%100, ms) +
				fmt.Sprintf("\n"+`{"arg":{"channel":"trades","instId":%q},"data":[{"instId":%q,"tradeId":"%d","px":"60001.%02d","sz":"0.01500","side":"sell","ts":"%d","count":"1"}]}`, s, s, i+1, i%100, ms)
		})
	krakenURL := fakeExchange(t, []string{"BTC/USD"}, `{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true}`, 0,
		func(s string, i int, ms int64) string {
			return fmt.Sprintf(`{"channel":"ticker","type":"update","data":[{"symbol":%q,"bid":60004.1,"bid_qty":740.0,"ask":60004.2,"ask_qty":1.5,"last":60004.%02d,"volume":997038.98383185,"low":58000,"high":61000,"change":-0.00017,"timestamp":%q}]}`,
				s, 10+i%90, time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000000Z"))
		})
	dir := t.TempDir()
	busPort, apiPort := testsvc.FreePort(t), testsvc.FreePort(t)
	p := startTickflow(t, dir, fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  okx:     {enabled: true, url: %q, symbols: [BTC-USDT], trades: true}
  kraken:  {enabled: true, url: %q, symbols: [BTC/USD]}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 2}
sinks:
  cache: {enabled: true, redis: {addrs: [%q]}}
  store: {enabled: true, batch: {size: 200, max_wait: 100ms}, clickhouse: {url: %q, database: instruments}}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, okxURL, krakenURL, busPort, filepath.Join(dir, "kafka"), redis.Addr(), ch.HTTPURL(), apiPort))
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)

	var inst struct {
		Data struct {
			Instrument string
			Ticks      []map[string]any
			Source     string
		}
	}
	// Until the cache has the pair, the store may answer (and fill the
	// cache): wait for the cache, which reads the tick JSON back from Redis.
	testkit.Eventually(t, 30*time.Second, "kraken's BTC/USD under BTC-USD, from the cache", func() bool {
		b := waitHTTP(t, base+"/api/v1/instruments/btc-usd/ticks", http.StatusOK)
		return json.Unmarshal(b, &inst) == nil && len(inst.Data.Ticks) == 1 && inst.Data.Source == "cache"
	})
	if k := inst.Data.Ticks[0]; k["exchange"] != "kraken" || k["symbol"] != "BTC/USD" || k["base"] != "BTC" || k["quote"] != "USD" || inst.Data.Source != "cache" {
		t.Errorf("BTC-USD across exchanges: %+v", inst.Data)
	}
	// The single-pair endpoint serves the same tick JSON from Redis.
	single := base + "/api/v1/tick/kraken/BTC%2FUSD"
	testkit.Eventually(t, 30*time.Second, "kraken's tick from the cache", func() bool { return header(t, single, api.SourceHeader) == "cache" })
	if b := waitHTTP(t, single, http.StatusOK); !strings.Contains(string(b), `"symbol":"BTC/USD","base":"BTC","quote":"USD"`) {
		t.Errorf("kraken tick from the Redis cache without its instrument: %s", b)
	}
	b := waitHTTP(t, base+"/api/v1/tick/*/BTC-USDT", http.StatusOK)
	if err := json.Unmarshal(b, &inst); err != nil || len(inst.Data.Ticks) != 1 || inst.Data.Ticks[0]["symbol"] != "BTC-USDT" || inst.Data.Ticks[0]["base"] != "BTC" {
		t.Errorf("BTC-USDT across exchanges: %s", b)
	}

	var page struct {
		Data struct{ Trades []map[string]any }
	}
	testkit.Eventually(t, 30*time.Second, "okx trades in the store", func() bool {
		b := waitHTTP(t, base+"/api/v1/trades/okx/BTC-USDT/history?limit=5", http.StatusOK)
		return json.Unmarshal(b, &page) == nil && len(page.Data.Trades) == 5
	})
	for _, tr := range page.Data.Trades {
		if p, _ := tr["price"].(string); tr["side"] != "sell" || tr["size"] != "0.01500" || !strings.HasPrefix(p, "60001.") ||
			tr["base"] != "BTC" || tr["quote"] != "USDT" || tr["trade_id"] == "" {
			t.Errorf("stored trade %v", tr)
		}
	}
	ready := string(waitHTTP(t, base+"/readyz", http.StatusOK))
	if !strings.Contains(ready, `"sink:store.trades"`) {
		t.Errorf("/readyz lacks the trades runtime: %s", ready)
	}
	metrics := string(waitHTTP(t, base+"/metrics", http.StatusOK))
	if !strings.Contains(metrics, `tickflow_sink_trades_total{sink="store.trades"}`) {
		t.Errorf("/metrics lacks tickflow_sink_trades_total{sink=\"store.trades\"}")
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
