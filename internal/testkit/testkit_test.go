package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"sink", "result"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	reg.MustRegister(c, g)
	c.WithLabelValues("cache", "ok").Add(3)
	c.WithLabelValues("cache", "error").Add(1)
	c.WithLabelValues("store", "ok").Add(5)
	g.Set(7)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"c_total", nil, 9},
		{"c_total", []string{"sink", "cache"}, 4},
		{"c_total", []string{"sink", "cache", "result", "ok"}, 3},
		{"c_total", []string{"sink", "push"}, 0},
		{"g", nil, 7},
		{"missing", nil, 0},
	} {
		if got := Metric(reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("Metric(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestPublisher(t *testing.T) {
	var p Publisher
	p.FailNext(1)
	ctx := context.Background()
	if err := p.Publish(ctx, "t", []byte("k"), []byte("v1")); !errors.Is(err, ErrBrokerDown) {
		t.Fatalf("first publish: %v, want ErrBrokerDown", err)
	}
	val := []byte("v2")
	if err := p.Publish(ctx, "t", []byte("k"), val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the caller may reuse its buffer
	rs := p.Records()
	if len(rs) != 1 || rs[0].Topic != "t" || rs[0].Key != "k" || string(rs[0].Value) != "v2" {
		t.Fatalf("records = %+v", rs)
	}
}

func TestFollowerBackfillsAndFansOut(t *testing.T) {
	f := &Follower{}
	f.Send("t", "k", []byte("old1"))
	f.Send("t", "k", []byte("old2"))
	f.FailNext(1)
	if err := f.Follow(context.Background(), "t", 1, func(_, _ []byte) {}); !errors.Is(err, ErrFollowFailed) {
		t.Fatalf("first Follow: %v, want ErrFollowFailed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() { done <- f.Follow(ctx, "t", 1, func(_, v []byte) { got <- string(v) }) }()
	Eventually(t, 5*time.Second, "following", func() bool { return f.Following("t") == 1 })
	f.Send("other", "k", []byte("elsewhere"))
	f.Send("t", "k", []byte("new"))
	for _, want := range []string{"old2", "new"} {
		if v := <-got; v != want {
			t.Fatalf("got %q, want %q", v, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.Following("t") != 0 {
		t.Fatal("still following after ctx ended")
	}
}
