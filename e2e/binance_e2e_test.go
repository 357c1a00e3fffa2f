package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/internal/testsvc"
)

// fakeBinance serves Binance's combined-stream ticker frames for whatever
// streams the client asks for, one frame per stream every few ms, with a
// garbage frame mixed in.
func fakeBinance(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			http.NotFound(w, r)
			return
		}
		streams := strings.Split(r.URL.Query().Get("streams"), "/")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(r.Context())
		c.Write(ctx, websocket.MessageText, []byte(`{"not":"a ticker"`))
		for i := 0; ctx.Err() == nil; i++ {
			for _, s := range streams {
				sym := strings.ToUpper(strings.TrimSuffix(s, "@ticker"))
				frame := fmt.Sprintf(`{"stream":%q,"data":{"e":"24hrTicker","E":%d,"s":%q,"p":"1.00","P":"0.002","w":"50000","x":"50000","c":"50100.%02d","Q":"0.1","b":"50099.99","B":"1","a":"50100.01","A":"2","o":"50000.00","h":"51000.00","l":"49000.00","v":"1234.5","q":"61234567.89","O":0,"C":1,"F":0,"L":1,"n":2}}`,
					s, time.Now().UnixMilli(), sym, i%100)
				if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
					return
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond): // the exchange's pace, not synchronisation
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBinanceToAPIAndKcat runs tickflow against a local Binance: ticks reach
// the REST API with exact decimals, and kcat, a real outside Kafka client,
// reads them from the embedded broker with the exchange:symbol key.
func TestBinanceToAPIAndKcat(t *testing.T) {
	srv := fakeBinance(t)
	dir := t.TempDir()
	busPort, apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	cfg := fmt.Sprintf(`
ingest:
  binance: {enabled: true, url: %q, symbols: [BTCUSDT, ethusdt]}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 3}
sinks:
  cache: {enabled: true}
  push: {enabled: true, listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, "ws"+strings.TrimPrefix(srv.URL, "http"), busPort, filepath.Join(dir, "kafka"), pushPort, apiPort)
	p := startTickflow(t, dir, cfg)
	body := waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/tick/binance/ETHUSDT", apiPort), http.StatusOK)
	var resp struct {
		Success bool
		Data    map[string]any
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	d := resp.Data
	if !resp.Success || d["exchange"] != "binance" || d["symbol"] != "ETHUSDT" || d["bid"] != "50099.99" ||
		d["open_24h"] != "50000.00" || d["quote_volume"] != "61234567.89" || !strings.HasPrefix(d["price"].(string), "50100.") {
		t.Fatalf("tick from API: %s", body)
	}

	// The operator's view: /readyz names the source and the sinks, and
	// /metrics carries the per-pair, malformed-frame, lag and latency series.
	ready := string(waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", apiPort), http.StatusOK))
	for _, c := range []string{`"source:binance"`, `"sink:cache"`, `"sink:push"`, `"broker"`} {
		if !strings.Contains(ready, c) {
			t.Errorf("/readyz lacks %s: %s", c, ready)
		}
	}
	metrics := string(waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", apiPort), http.StatusOK))
	for _, m := range []string{
		`tickflow_ingest_ticks_received_total{exchange="binance",symbol="ETHUSDT"}`,
		`tickflow_ingest_ticks_acked_total{exchange="binance",symbol="BTCUSDT"}`,
		`tickflow_ingest_malformed_frames_total{exchange="binance",reason="bad_json"}`,
		`tickflow_sink_consumer_lag{sink="cache"}`,
		`tickflow_sink_batch_size_count{sink="push"}`,
		`tickflow_sink_write_seconds_count{sink="cache"}`,
		`tickflow_sink_latency_seconds_count{from="event",sink="cache"}`,
		`tickflow_sink_latency_seconds_count{from="receive",sink="push"}`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	kcat := testsvc.NeedBinary(t, "kcat", "kcat")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-b", fmt.Sprintf("127.0.0.1:%d", busPort), "-C", "-t", "market_data.ticks",
		"-o", "beginning", "-c", "1", "-q", "-f", "%k\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	key, val, _ := strings.Cut(line, "\t")
	if key != "binance:BTCUSDT" && key != "binance:ETHUSDT" {
		t.Fatalf("kcat key %q (line %q)", key, line)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(val), &v); err != nil || v["exchange"] != "binance" || key != "binance:"+v["symbol"].(string) {
		t.Fatalf("kcat value %q: %v", val, err)
	}

	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
