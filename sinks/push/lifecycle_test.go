package push

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// fakeCache stands in for the cache backend's Pairs.
type fakeCache struct {
	ticks []tick.Tick
	err   error
	calls int
}

func (f *fakeCache) Pairs(context.Context) ([]tick.Tick, error) {
	f.calls++
	return f.ticks, f.err
}

func TestSnapshotFromCache(t *testing.T) {
	cache := &fakeCache{ticks: []tick.Tick{
		mkTick("binance", "BTCUSDT", "100", 10), // older than the hub's below
		mkTick("binance", "ETHUSDT", "7", 10),   // a pair the hub has not seen since a restart
	}}
	ts := startSink(t, func(*Config) {}, func(e *sinks.Env, _ *Sink) {
		if e != nil {
			e.Backend = func(name string) (any, bool) { return cache, name == "cache" }
		}
	})
	write(t, ts.Sink, mkTick("binance", "BTCUSDT", "101", 20))
	c := dial(t, ts, "")
	_, snap := subscribe(t, c, `{"type":"subscribe","channels":["tick"]}`)
	var got []string
	for _, tk := range snap {
		got = append(got, tk.Key()+"="+tk.Price.String())
	}
	if want := []string{"binance:BTCUSDT=101", "binance:ETHUSDT=7"}; !sameSet(got, want) || len(got) != 2 {
		t.Fatalf("snapshot = %v, want %v (the hub's newer tick, the cache's for the rest)", got, want)
	}
	// A second subscriber within the cache TTL does not ask the cache again.
	c2 := dial(t, ts, "")
	subscribe(t, c2, `{"type":"subscribe","channels":["tick"],"symbols":["ETHUSDT"]}`)
	if cache.calls != 1 {
		t.Errorf("cache asked %d times, want 1", cache.calls)
	}
}

func TestSnapshotWithoutCacheOrWithAFailingOne(t *testing.T) {
	for _, backend := range []func(string) (any, bool){
		nil,
		func(name string) (any, bool) {
			return &fakeCache{err: errors.New("redis down")}, name == "cache"
		},
		func(name string) (any, bool) { return struct{}{}, name == "cache" }, // no Pairs
	} {
		ts := startSink(t, func(*Config) {}, func(e *sinks.Env, _ *Sink) {
			if e != nil {
				e.Backend = backend
			}
		})
		write(t, ts.Sink, mkTick("okx", "SOLUSDT", "3", 1))
		c := dial(t, ts, "")
		if _, snap := subscribe(t, c, `{"type":"subscribe"}`); len(snap) != 1 || snap[0].Key() != "okx:SOLUSDT" {
			t.Errorf("snapshot = %+v, want the hub's okx:SOLUSDT", snap)
		}
	}
}

// Ending Run says goodbye to every client with 1001, stops following the
// alert and signal topics and returns promptly; Close then refuses batches.
func TestShutdown(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	bus := &testkit.Follower{}
	s, err := New(sinks.Env{Metrics: prometheus.NewRegistry(), Follower: bus}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testkit.Eventually(t, 5*time.Second, "serving and following", func() bool {
		return s.Ready(ctx) == nil && bus.Following(alert.Topic) == 1 && bus.Following(signal.Topic) == 1
	})
	ts := &testSink{Sink: s}
	clients := []*websocket.Conn{dial(t, ts, ""), dial(t, ts, "")}
	for _, c := range clients {
		subscribe(t, c, `{"type":"subscribe"}`)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	for _, c := range clients {
		ce, last := expectClose(t, c)
		if ce.Code != websocket.StatusGoingAway || last.Code != codeShutdown {
			t.Errorf("close %d %q after %+v, want 1001 after %s", ce.Code, ce.Reason, last, codeShutdown)
		}
	}
	if s.Ready(context.Background()) == nil {
		t.Error("ready after Run returned")
	}
	if bus.Following(alert.Topic) != 0 || bus.Following(signal.Topic) != 0 {
		t.Error("still following the topics after Run returned")
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(context.Background(), []tick.Tick{mkTick("a", "B", "1", 1)}); err == nil {
		t.Error("WriteBatch after Close succeeded")
	}
}
