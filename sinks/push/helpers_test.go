package push

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// testSink is a running push sink on a loopback port with its own metrics
// registry, following the alert and signal topics of a fake bus.
type testSink struct {
	*Sink
	reg *prometheus.Registry
	bus *testkit.Follower
}

// startSink starts a sink with the default config changed by mutate; opts
// adjust it before it runs.
func startSink(t testing.TB, mutate func(*Config), opts ...func(*sinks.Env, *Sink)) *testSink {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	mutate(cfg)
	reg := prometheus.NewRegistry()
	bus := &testkit.Follower{}
	e := sinks.Env{Name: "push", Metrics: reg, Follower: bus}
	for _, f := range opts {
		f(&e, nil)
	}
	s, err := New(e, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range opts {
		f(nil, s)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "listener serving", func() bool { return s.Ready(ctx) == nil })
	if e.Follower == bus {
		testkit.Eventually(t, 5*time.Second, "following the alert and signal topics", func() bool {
			for _, et := range eventTopics {
				if bus.Following(et.topic) != 1 {
					return false
				}
			}
			return true
		})
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		_ = s.Close(context.Background())
	})
	return &testSink{Sink: s, reg: reg, bus: bus}
}

// raise puts an event on its topic, as the risk or strategy sink does, and
// waits until the sink has handed it to the hub.
func (ts *testSink) raise(t testing.TB, topic, key string, payload []byte) {
	t.Helper()
	before := testkit.Metric(ts.reg, "tickflow_push_events_total") + testkit.Metric(ts.reg, "tickflow_push_events_undecodable_total")
	ts.bus.Send(topic, key, payload)
	testkit.Eventually(t, 5*time.Second, "the event to reach the hub", func() bool {
		return testkit.Metric(ts.reg, "tickflow_push_events_total")+testkit.Metric(ts.reg, "tickflow_push_events_undecodable_total") > before
	})
}

func (ts *testSink) url() string { return "ws://" + ts.Addr() + ts.cfg.Path }

func dial(t testing.TB, ts *testSink, origin string) *websocket.Conn {
	t.Helper()
	c, err := tryDial(ts, origin)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func tryDial(ts *testSink, origin string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, resp, err := websocket.Dial(ctx, ts.url(), &websocket.DialOptions{HTTPHeader: h})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// frame is any server message.
type frame struct {
	Type          string          `json:"type"`
	Data          json.RawMessage `json:"data"`
	Key           string          `json:"key"`
	Code          string          `json:"code"`
	Message       string          `json:"message"`
	Channels      []string        `json:"channels"`
	Exchanges     []string        `json:"exchanges"`
	Symbols       []string        `json:"symbols"`
	Subscriptions int             `json:"subscriptions"`
	Snapshot      int             `json:"snapshot"`
	Skipped       uint64          `json:"skipped"`
	// A tick's position, and a subscribed reply's (with, on a resume, how
	// it went).
	Part      *int32    `json:"part"`
	Off       int64     `json:"off"`
	Position  *position `json:"position"`
	Recovered *bool     `json:"recovered"`
	Recovery  *recovery `json:"recovery"`
}

func (f frame) tick(t testing.TB) tick.Tick {
	t.Helper()
	var tk tick.Tick
	if err := tick.Unmarshal(f.Data, &tk); err != nil {
		t.Fatalf("tick frame %s: %v", f.Data, err)
	}
	return tk
}

func read(t testing.TB, c *websocket.Conn) frame {
	t.Helper()
	f, err := tryRead(c, 10*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func tryRead(c *websocket.Conn, d time.Duration) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.MessageText {
		return frame{}, errors.New("binary frame from server")
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return frame{}, err
	}
	return f, nil
}

func send(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %s: %v", msg, err)
	}
}

// subscribe sends msg and returns the "subscribed" reply and the snapshot
// ticks that follow it.
func subscribe(t testing.TB, c *websocket.Conn, msg string) (frame, []tick.Tick) {
	t.Helper()
	send(t, c, msg)
	f := read(t, c)
	if f.Type != "subscribed" {
		t.Fatalf("after %s: got %+v, want subscribed", msg, f)
	}
	var snap []tick.Tick
	for range f.Snapshot {
		g := read(t, c)
		if g.Type != "tick" {
			t.Fatalf("snapshot: got %+v, want tick", g)
		}
		snap = append(snap, g.tick(t))
	}
	return f, snap
}

// expectClose reads until the connection closes and returns the close
// error, skipping any data frames before it except that it returns the
// last error frame seen.
func expectClose(t testing.TB, c *websocket.Conn) (websocket.CloseError, frame) {
	t.Helper()
	var lastErr frame
	for {
		f, err := tryRead(c, 15*time.Second)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("expected a close frame, got %v", err)
			}
			return ce, lastErr
		}
		if f.Type == "error" {
			lastErr = f
		}
	}
}

// mkTick is a tick with every field set, about 330 bytes on the wire like
// a real exchange's.
func mkTick(ex, sym, price string, ts int64) tick.Tick {
	p := tick.MustDecimal(price)
	return tick.Tick{
		Exchange: ex, Symbol: sym, Timestamp: ts, Price: p, Bid: p, Ask: p,
		Volume: tick.MustDecimal("12345.67890000"), Open24h: tick.MustDecimal("0.50000000"),
		High24h: tick.MustDecimal("99999.99000000"), Low24h: tick.MustDecimal("0.10000000"),
		QuoteVolume: tick.MustDecimal("987654321.12345678"), ReceivedAt: time.Now().UnixMicro(),
	}
}

// write hands ticks to the sink and waits until the hub has queued them
// to every subscriber, so what a client reads next is deterministic.
func write(t testing.TB, s *Sink, ticks ...tick.Tick) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WriteBatch(ctx, ticks); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if err := s.hub.flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

func counter(ts *testSink, name string, labels ...string) float64 {
	return testkit.Metric(ts.reg, name, labels...)
}
