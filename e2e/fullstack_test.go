package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/internal/testsvc"
)

// TestFullStack runs tickflow as a user would with real backends: the
// simulated exchange, the embedded broker, Redis for the cache and
// ClickHouse (over HTTP) for the store. It checks the API answers from the
// cache, candles come from the cache and the store, and when Redis dies (the real process)
// the latest tick is still served, from the store, while /readyz says why.
func TestFullStack(t *testing.T) {
	redis := testsvc.StartRedis(t)
	ch := testsvc.StartClickHouse(t)
	dir := t.TempDir()
	busPort, apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	cfg := fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  sim: {enabled: true, symbols: [BTCUSDT, ETHUSDT], interval: 10ms, seed: 7}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 4}
sinks:
  cache: {enabled: true, redis: {addrs: [%q]}}
  store: {enabled: true, batch: {size: 200, max_wait: 100ms}, clickhouse: {url: %q, database: fullstack}}
  push: {enabled: true, listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, busPort, filepath.Join(dir, "kafka"), redis.Addr(), ch.HTTPURL(), pushPort, apiPort)
	p := startTickflow(t, dir, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)

	waitHTTP(t, base+"/readyz", http.StatusOK)
	latest := base + "/api/v1/tick/sim/BTCUSDT"
	waitHTTP(t, latest, http.StatusOK)
	if src := header(t, latest, api.SourceHeader); src != "cache" {
		t.Fatalf("latest tick served by %q, want cache", src)
	}

	// Candles: the cache's rolling ones at once, the store's for older
	// buckets once it has flushed a batch.
	var candles struct {
		Success bool
		Data    struct{ Candles []map[string]any }
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(candles.Data.Candles) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no candles from the store within 30s")
		}
		body := waitHTTP(t, base+"/api/v1/candles/sim/BTCUSDT?interval=1m", http.StatusOK)
		if err := json.Unmarshal(body, &candles); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // polling a real condition with a deadline
	}
	c := candles.Data.Candles[len(candles.Data.Candles)-1]
	if _, ok := c["open"].(string); !ok {
		t.Fatalf("candle %v: prices must be decimal strings", c)
	}

	// A browser-style client on the push feed gets the subscription echo,
	// a snapshot from the cache, then live ticks.
	frames := pushFrames(t, fmt.Sprintf("ws://127.0.0.1:%d/ws", pushPort), `{"type":"subscribe","channels":["tick"],"symbols":["ETHUSDT"],"exchanges":["sim"]}`, 3)
	if frames[0]["type"] != "subscribed" {
		t.Fatalf("first push frame %v, want subscribed", frames[0])
	}
	for _, f := range frames[1:] {
		d, _ := f["data"].(map[string]any)
		if f["type"] != "tick" || d["symbol"] != "ETHUSDT" || d["exchange"] != "sim" {
			t.Fatalf("push frame %v, want a sim ETHUSDT tick", f)
		}
	}

	// A second process that only serves the API, on the same Redis and
	// ClickHouse with both sinks off, answers from them without consuming.
	apiOnly(t, busPort, redis.Addr(), ch.HTTPURL())

	// Redis dies: the latest tick now comes from the store.
	redis.Stop()
	waitHTTP(t, base+"/readyz", http.StatusServiceUnavailable)
	body := waitHTTP(t, latest, http.StatusOK)
	if src := header(t, latest, api.SourceHeader); src != "store" {
		t.Fatalf("with Redis down the latest tick came from %q (%s), want store", src, body)
	}
	ready := string(waitHTTP(t, base+"/readyz", http.StatusServiceUnavailable))
	if !strings.Contains(ready, "sink:cache") {
		t.Fatalf("/readyz does not name the cache: %s", ready)
	}

	// Redis returns: the cache catches up and serves again.
	redis.Restart()
	waitHTTP(t, base+"/readyz", http.StatusOK)
	deadline = time.Now().Add(30 * time.Second)
	for header(t, latest, api.SourceHeader) != "cache" {
		if time.Now().After(deadline) {
			t.Fatal("cache never served again after Redis came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// apiOnly runs tickflow as an API-only role: sources and sinks off, the
// cache and store sections naming their servers. It reads the latest tick
// from Redis, history and candles from ClickHouse, lists itself ready on
// both backends, and joins no consumer group.
func apiOnly(t *testing.T, busPort int, redisAddr, chURL string) {
	t.Helper()
	dir := t.TempDir()
	port := testsvc.FreePort(t)
	p := startTickflow(t, dir, fmt.Sprintf(`
ingest:
  binance: {enabled: false}
bus: {brokers: ["127.0.0.1:%d"]}
sinks:
  cache: {enabled: false, redis: {addrs: [%q]}}
  store: {enabled: false, clickhouse: {url: %q, database: fullstack}}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, busPort, redisAddr, chURL, port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ready := string(waitHTTP(t, base+"/readyz", http.StatusOK))
	for _, c := range []string{"backend:cache", "backend:store"} {
		if !strings.Contains(ready, c) {
			t.Errorf("API-only /readyz does not list %s: %s", c, ready)
		}
	}
	latest := base + "/api/v1/tick/sim/BTCUSDT"
	waitHTTP(t, latest, http.StatusOK)
	if src := header(t, latest, api.SourceHeader); src != "cache" {
		t.Errorf("API-only latest tick served by %q, want cache (Redis)", src)
	}
	var page struct {
		Data struct{ Candles []map[string]any }
	}
	if err := json.Unmarshal(waitHTTP(t, base+"/api/v1/candles/sim/BTCUSDT?interval=1m", http.StatusOK), &page); err != nil || len(page.Data.Candles) == 0 {
		t.Errorf("API-only candles from ClickHouse: %d candles, err %v", len(page.Data.Candles), err)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("API-only exit: %v", err)
	}
	if strings.Contains(p.raw.String(), "sink consuming") {
		t.Errorf("API-only process consumed:\n%s", p.raw.String())
	}
}

// pushFrames dials the push feed, sends sub and returns the first n frames.
func pushFrames(t *testing.T, url, sub string, n int) []map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://127.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for len(out) < n {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("push read after %d frames: %v", len(out), err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("push frame %q: %v", b, err)
		}
		out = append(out, m)
	}
	return out
}

func header(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get(name)
}
