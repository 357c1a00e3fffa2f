package loadgen

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestPacedRunSendsTheScheduledRequests(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	r := Run([]string{ok.URL + "/a", ok.URL + "/b"}, 500, 200*time.Millisecond, 4)
	if r.Sent != 100 || r.Failed != 0 || len(r.Latencies) != 100 {
		t.Fatalf("sent %d failed %d measured %d, want 100/0/100", r.Sent, r.Failed, len(r.Latencies))
	}
	if r.Quantile(0.5) > r.Quantile(0.99) || r.Quantile(0.99) > r.Quantile(1) || r.Quantile(0) <= 0 {
		t.Fatalf("quantiles out of order: %v %v %v", r.Quantile(0.5), r.Quantile(0.99), r.Quantile(1))
	}
}

func TestFailuresAreCountedNotMeasured(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	r := Run([]string{bad.URL}, 0, 50*time.Millisecond, 2)
	if r.Sent == 0 || r.Failed != r.Sent || len(r.Latencies) != 0 || r.Quantile(0.99) != 0 {
		t.Fatalf("%+v", r)
	}
}
