package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/internal/testsvc"
)

// pageRig is what the web page's Chromium tests run against: a tickflow
// process with the embedded broker, the in-process cache, push and the API
// (no store, no exchange), and a producer onto its broker standing in for
// ingest, risk and strategy.
type pageRig struct {
	chromium string
	base     string // the API's (and page's) URL
	proc     *proc
}

func startPageRig(t *testing.T, instance string) (*pageRig, func(topic, key string, value []byte)) {
	t.Helper()
	chromium := testsvc.NeedBinary(t, "chromium", "chromium")
	dir := t.TempDir()
	busPort, apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	p := startTickflow(t, dir, fmt.Sprintf(`
ingest:
  binance: {enabled: false}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 4, instance_id: %s}
sinks:
  cache: {enabled: true}
  push: {enabled: true, listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, busPort, filepath.Join(dir, "kafka"), instance, pushPort, apiPort))
	r := &pageRig{chromium: chromium, base: fmt.Sprintf("http://127.0.0.1:%d", apiPort), proc: p}
	waitHTTP(t, r.base+"/readyz", http.StatusOK)

	cl, err := kgo.NewClient(kgo.SeedBrokers(fmt.Sprintf("127.0.0.1:%d", busPort)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	publish := func(topic, key string, value []byte) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: value}).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
	return r, publish
}
