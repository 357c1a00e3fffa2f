package risk

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/clock"
)

// hookServer answers with the scripted statuses in turn (then 200) and
// records what it received.
type hookServer struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
	got      chan struct{}
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, b)
	h.headers = append(h.headers, r.Header.Clone())
	status := http.StatusOK
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	h.mu.Unlock()
	w.WriteHeader(status)
	h.got <- struct{}{}
}

func newHook(t *testing.T, cfg Webhook, clk clock.Clock) (*notifier, *metrics) {
	t.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return newNotifier(cfg, clk, slog.New(slog.DiscardHandler), m), m
}

func hookConfig(url string) Webhook {
	c := DefaultConfig().Webhook
	c.URL, c.Secret = url, "s3cret"
	return c
}

var sample = alert.Alert{ID: "abc", Rule: alert.PriceVolatility, Status: alert.Firing, Severity: alert.Warning, Exchange: "binance", Symbol: "BTCUSDT"}

func TestWebhookSignsAndRetriesWithBackoff(t *testing.T) {
	srv := &hookServer{statuses: []int{500, 503, 200}, got: make(chan struct{}, 10)}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	clk := clock.NewFake(time.Unix(0, 0))
	n, m := newHook(t, hookConfig(ts.URL), clk)
	done := make(chan error, 1)
	go func() { done <- n.deliver(context.Background(), &sample) }()

	<-srv.got
	clk.WaitTimers(1)
	clk.Advance(499 * time.Millisecond)
	select {
	case <-srv.got:
		t.Fatal("retried before the backoff elapsed")
	default:
	}
	clk.Advance(time.Millisecond) // first backoff: 500 ms
	<-srv.got
	clk.WaitTimers(1)
	clk.Advance(time.Second) // doubled
	<-srv.got
	if err := <-done; err != nil {
		t.Fatalf("deliver: %v", err)
	}

	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.bodies) != 3 {
		t.Fatalf("%d attempts, want 3", len(srv.bodies))
	}
	var a alert.Alert
	if err := json.Unmarshal(srv.bodies[2], &a); err != nil || a.ID != "abc" {
		t.Fatalf("body %s: %v", srv.bodies[2], err)
	}
	h := srv.headers[2]
	if got, want := h.Get(SignatureHeader), Sign([]byte("s3cret"), srv.bodies[2]); got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	if h.Get(IDHeader) != "abc" || h.Get(EventHeader) != "alert" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	if v := counterValue(t, m.webhookRetries); v != 2 {
		t.Fatalf("retries counted %v, want 2", v)
	}
}

func TestWebhookGivesUp(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		retries  int
		attempts int
	}{
		{"refused is not retried", []int{400}, 3, 1},
		{"server errors until retries run out", []int{500, 500, 500}, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &hookServer{statuses: tt.statuses, got: make(chan struct{}, 10)}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			clk := clock.NewFake(time.Unix(0, 0))
			cfg := hookConfig(ts.URL)
			cfg.Retries = tt.retries
			n, _ := newHook(t, cfg, clk)
			done := make(chan error, 1)
			go func() { done <- n.deliver(context.Background(), &sample) }()
			for i := 0; i < tt.attempts; i++ {
				<-srv.got
				if i < tt.attempts-1 {
					clk.WaitTimers(1)
					clk.Advance(cfg.MaxBackoff)
				}
			}
			if err := <-done; err == nil {
				t.Fatal("deliver succeeded")
			}
			if len(srv.bodies) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(srv.bodies), tt.attempts)
			}
		})
	}
}

func TestWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer ts.Close()
	defer close(release)
	cfg := hookConfig(ts.URL)
	cfg.Retries, cfg.Timeout = 0, 50*time.Millisecond
	n, _ := newHook(t, cfg, clock.NewFake(time.Unix(0, 0)))
	start := time.Now()
	if err := n.deliver(context.Background(), &sample); err == nil {
		t.Fatal("deliver to a hung receiver succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("timeout took %s", d)
	}
}

func TestWebhookQueueNeverBlocks(t *testing.T) {
	cfg := hookConfig("http://127.0.0.1:1/")
	cfg.Queue = 2
	n, m := newHook(t, cfg, clock.NewFake(time.Unix(0, 0)))
	for i := 0; i < 5; i++ { // nobody is draining: enqueue must still return
		n.enqueue(sample)
	}
	info := sample
	info.Severity = alert.Info
	n.cfg.MinSeverity = alert.Warning
	n.enqueue(info) // below min severity: not even counted as dropped
	if v := counterValue(t, m.webhook.WithLabelValues("dropped")); v != 3 {
		t.Fatalf("dropped %v, want 3", v)
	}
}

// The sink posts alerts once the bus has them, from Run.
func TestSinkPostsAlertsToWebhook(t *testing.T) {
	srv := &hookServer{got: make(chan struct{}, 10)}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	cfg := onlyRules(alert.PriceVolatility)
	cfg.Webhook = hookConfig(ts.URL)
	h := newHarness(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Sink.Run(ctx) }()
	h.Write(path("binance", "BTCUSDT", time.Second, "100", "107")...)
	<-srv.got
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	var a alert.Alert
	if err := json.Unmarshal(srv.bodies[0], &a); err != nil || a.ID != h.alerts()[0].ID {
		t.Fatalf("posted %s (%v), published %+v", srv.bodies[0], err, h.alerts())
	}
}

func counterValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
