package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/signal"
)

// TestSplitRiskAndPush runs the risk monitor and the push feed in two
// tickflow processes against one broker, as the README's scale-out
// promises: process 1 hosts the embedded broker, the simulated exchange,
// the risk monitor and the strategy engine; process 2 points bus.brokers at
// it and runs only push. A browser connected to process 2 receives an alert
// raised in process 1 and a signal decided there, each the record that is
// on its topic.
//
// Push follows the topics from their ends (live fan-out), so the rules are
// set to fire and resolve all the time: with a tiny threshold, no cooldown
// and no hysteresis the simulator's random walk crosses it again and again,
// and whatever fires after the browser subscribed is what it must see.
func TestSplitRiskAndPush(t *testing.T) {
	dir := t.TempDir()
	busPort, api1, api2, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	p1 := startTickflow(t, mkdir(t, dir, "p1"), fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  sim: {enabled: true, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], interval: 5ms, seed: 42}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 4}
sinks:
  risk:
    enabled: true
    volatility: {window: 1s, threshold: "0.0002", clear_ratio: "1", cooldown: 0s}
    stale_feed: {enabled: false}
    crossed_book: {enabled: false}
    price_spike: {enabled: false}
  strategy:
    enabled: true
    strategies:
      - {name: sim-mom, type: momentum, exchange: sim, symbol: BTCUSDT, window: 1s, threshold: "0.00001"}
  push: {enabled: false}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, busPort, filepath.Join(dir, "p1", "kafka"), api1))
	p1.waitLog(t, "process 1's API", msgIs("started", "component", "api"))

	broker := fmt.Sprintf("127.0.0.1:%d", busPort)
	p2 := startTickflow(t, mkdir(t, dir, "p2"), fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  sim: {enabled: false}
bus: {brokers: [%q]}
sinks:
  push: {enabled: true, listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, broker, pushPort, api2))
	p2.waitLog(t, "process 2's push sink", msgIs("started", "component", "sink", "sink", "push"))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var ws *websocket.Conn
	// The listener comes up with push's Run, just after the log line.
	testkit.Eventually(t, 30*time.Second, "process 2's push listener", func() bool {
		var err error
		ws, _, err = websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", pushPort), nil)
		return err == nil
	})
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channels":["alert","signal"]}`)); err != nil {
		t.Fatal(err)
	}

	var gotAlert *alert.Alert
	var gotSignal *signal.Signal
	for gotAlert == nil || gotSignal == nil {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading process 2's push feed: %v (alert %v, signal %v)", err, gotAlert != nil, gotSignal != nil)
		}
		var f struct {
			Type string          `json:"type"`
			Key  string          `json:"key"`
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %s: %v", b, err)
		}
		switch f.Type {
		case "alert":
			var a alert.Alert
			if err := json.Unmarshal(f.Data, &a); err != nil || a.ID == "" || f.Key != a.Key() {
				t.Fatalf("alert frame %s: %v", b, err)
			}
			gotAlert = &a
		case "signal":
			var s signal.Signal
			if err := json.Unmarshal(f.Data, &s); err != nil || s.ID == "" || f.Key != s.Key() {
				t.Fatalf("signal frame %s: %v", b, err)
			}
			gotSignal = &s
		}
	}
	if gotAlert.Exchange != "sim" || gotAlert.Rule != alert.PriceVolatility || gotSignal.Strategy != "sim-mom" {
		t.Fatalf("alert %+v, signal %+v", gotAlert, gotSignal)
	}

	// Each is the record on its topic.
	onTopic := func(topic string, match func(value []byte) bool) {
		t.Helper()
		fctx, stop := context.WithCancel(ctx)
		defer stop()
		found := false
		err := bus.Follower{Client: bus.ClientConfig{Brokers: []string{broker}}}.Follow(fctx, topic, 100_000, func(_, v []byte) {
			if !found && match(v) {
				found = true
				stop()
			}
		})
		if err != nil || !found {
			t.Fatalf("%s: the pushed event is not on the topic (err %v)", topic, err)
		}
	}
	onTopic(alert.Topic, func(v []byte) bool {
		var a alert.Alert
		return json.Unmarshal(v, &a) == nil && a.DedupKey() == gotAlert.DedupKey() && a.Timestamp == gotAlert.Timestamp
	})
	onTopic(signal.Topic, func(v []byte) bool {
		var s signal.Signal
		return json.Unmarshal(v, &s) == nil && s.ID == gotSignal.ID
	})

	// Process 2's API, which runs neither risk nor strategy, lists them:
	// its recent lists follow the topics too.
	listed := func(path, id string) bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", api2, path))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var page struct {
			Data []struct{ ID string }
		}
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
			return false
		}
		for _, e := range page.Data {
			if e.ID == id {
				return true
			}
		}
		return false
	}
	testkit.Eventually(t, 20*time.Second, "the alert on process 2's /api/v1/alerts", func() bool {
		return listed("/api/v1/alerts?limit=1000", gotAlert.ID)
	})
	testkit.Eventually(t, 20*time.Second, "the signal on process 2's /api/v1/signals", func() bool {
		return listed("/api/v1/signals?limit=1000", gotSignal.ID)
	})

	if err := p2.stop(t); err != nil {
		t.Fatalf("process 2 exit: %v", err)
	}
	if err := p1.stop(t); err != nil {
		t.Fatalf("process 1 exit: %v", err)
	}
}

func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}
