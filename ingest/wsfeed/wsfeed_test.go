package wsfeed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/tick"
)

// ---- a toy exchange: a format small enough to read at a glance ----
//
// The URL carries the shard as ?s=a,b; each subscribe message is "sub <stream>";
// frames are "tick <SYMBOL> <price>", "pong", "err <detail>", "bye" (asks
// for a new connection); anything else is malformed.

type toy struct{ base string }

func (x toy) URL(streams []string) string { return x.base + "/ws?s=" + strings.Join(streams, ",") }

func (toy) Subscribe(streams []string) [][]byte {
	var out [][]byte
	for _, s := range streams {
		out = append(out, []byte("sub "+s))
	}
	return out
}

func (toy) Decode(frame []byte, t *tick.Tick) (Event, error) {
	f := strings.Fields(string(frame))
	switch {
	case len(f) == 3 && f[0] == "tick":
		*t = tick.Tick{Exchange: "toy", Symbol: f[1], Timestamp: 1}
		for _, d := range []*tickDecimal{{&t.Price}, {&t.Bid}, {&t.Ask}, {&t.Volume}} {
			if err := tick.ParseDecimalBytes(d.d, []byte(f[2])); err != nil {
				return Event{}, &Malformed{"bad_field", err.Error()}
			}
		}
		return Event{Kind: Tick}, nil
	case len(f) == 1 && f[0] == "pong":
		return Event{Kind: Ignore}, nil
	case len(f) >= 1 && f[0] == "err":
		return Event{Kind: ServerEvent, Name: "error", Info: strings.Join(f[1:], " ")}, nil
	case len(f) == 1 && f[0] == "bye":
		return Event{Kind: Reconnect, Name: "server_shutdown"}, nil
	case len(f) == 1 && f[0] == "junk":
		return Event{}, errors.New("not a frame at all")
	}
	return Event{}, &Malformed{"unexpected_message", string(frame)}
}

type tickDecimal struct{ d *apd.Decimal }

// ---- a local server speaking it ----

type server struct {
	t      *testing.T
	srv    *httptest.Server
	ctx    context.Context
	clk    clock.Clock
	script func(sc *serverConn)

	mu       sync.Mutex
	conns    []*serverConn
	attempts []time.Time
	reject   []int
	header   http.Header
}

type serverConn struct {
	n      int
	shard  []string
	ws     *websocket.Conn
	gone   context.Context
	s      *server
	mu     sync.Mutex
	got    []string // text messages from the client, in order
	gotNew chan struct{}
}

func newServer(t *testing.T, clk clock.Clock, script func(sc *serverConn)) *server {
	s := &server{t: t, clk: clk, script: script}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx = ctx
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	t.Cleanup(cancel)
	return s
}

func (s *server) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.attempts = append(s.attempts, s.clk.Now())
	if len(s.reject) > 0 {
		status := s.reject[0]
		s.reject = s.reject[1:]
		s.mu.Unlock()
		for k, v := range s.header {
			w.Header()[k] = v
		}
		http.Error(w, "go away", status)
		return
	}
	sc := &serverConn{n: len(s.conns), shard: strings.Split(r.URL.Query().Get("s"), ","), s: s, gotNew: make(chan struct{}, 100)}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		s.mu.Unlock()
		s.t.Errorf("accept: %v", err)
		return
	}
	sc.ws = ws
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	defer ws.CloseNow()
	gone, leave := context.WithCancel(s.ctx)
	sc.gone = gone
	go func() { // read what the client sends until it leaves
		defer leave()
		for {
			_, b, err := ws.Read(gone)
			if err != nil {
				return
			}
			sc.mu.Lock()
			sc.got = append(sc.got, string(b))
			sc.mu.Unlock()
			sc.gotNew <- struct{}{}
		}
	}()
	s.script(sc)
}

func (s *server) connections() []*serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

func (s *server) attemptTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attempts)
}

func (sc *serverConn) send(frames ...string) {
	for _, f := range frames {
		if err := sc.ws.Write(sc.s.ctx, websocket.MessageText, []byte(f)); err != nil {
			if sc.gone.Err() == nil {
				sc.s.t.Errorf("conn %d: write: %v", sc.n, err)
			}
			return
		}
	}
}

func (sc *serverConn) messages() []string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return slices.Clone(sc.got)
}

func (sc *serverConn) waitGone() { <-sc.gone.Done() }

// ---- the receiving end ----

type collector struct {
	mu    sync.Mutex
	ticks []tick.Tick
}

func (c *collector) Enqueue(_ context.Context, t *tick.Tick) error {
	c.mu.Lock()
	c.ticks = append(c.ticks, *t)
	c.mu.Unlock()
	return nil
}

func (c *collector) symbols() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, t := range c.ticks {
		out = append(out, t.Symbol)
	}
	return out
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type harness struct {
	s   *server
	out *collector
	m   *ingest.Metrics
	clk *clock.Fake
	f   *Feed
}

// options are the toy's: short, explicit limits the tests move the fake
// clock past.
func options() Options {
	return Options{
		Name:       "toy",
		Streams:    []string{"a"},
		PerConn:    10,
		StaleAfter: time.Minute,
		Backoff:    backoff.Policy{Min: time.Second, Max: 4 * time.Second},
	}
}

func start(t *testing.T, o Options, script func(sc *serverConn), setup ...func(s *server)) *harness {
	t.Helper()
	h := &harness{clk: clock.NewFake(t0), out: &collector{}}
	h.s = newServer(t, h.clk, script)
	for _, f := range setup {
		f(h.s)
	}
	reg := prometheus.NewRegistry()
	h.m, _ = ingest.NewMetrics(reg)
	o.Exchange = toy{base: h.s.url()}
	o.Clock, o.Metrics, o.Queue = h.clk, reg, h.out
	var err error
	if h.f, err = New(o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5s of cancel")
		}
	})
	return h
}

func (h *harness) reconnects(reason string) float64 {
	return testutil.ToFloat64(h.m.Reconnects.WithLabelValues("toy", reason))
}

func (h *harness) waitTicks(t *testing.T, n int) []string {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("%d ticks", n), func() bool { return len(h.out.symbols()) >= n })
	return h.out.symbols()
}

func (h *harness) waitTimers(t *testing.T, n int) {
	t.Helper()
	if !h.clk.WaitTimersFor(n, 5*time.Second) {
		t.Fatalf("timed out waiting for %d pending timers (have %d)", n, h.clk.Pending())
	}
}

// advanceUntil moves the fake clock by step whenever a timer waits, until
// cond holds: for waits whose exact length is random (jittered backoff).
func (h *harness) advanceUntil(t *testing.T, step time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, what, func() bool {
		if cond() {
			return true
		}
		if h.clk.Pending() > 0 {
			h.clk.Advance(step)
		}
		return false
	})
}

// ---- tests ----

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(o *Options)
		err    string
	}{
		{"ok", func(*Options) {}, ""},
		{"no name", func(o *Options) { o.Name = "" }, "name: required"},
		{"no exchange", func(o *Options) { o.Exchange = nil }, "exchange: required"},
		{"no queue", func(o *Options) { o.Queue = nil }, "queue: required"},
		{"no streams", func(o *Options) { o.Streams = nil }, "streams: none"},
		{"no streams per conn", func(o *Options) { o.PerConn = 0 }, "streams per connection"},
		{"no stale after", func(o *Options) { o.StaleAfter = 0 }, "stale after"},
		{"negative lifetime", func(o *Options) { o.MaxLifetime = -time.Second }, "max lifetime"},
		{"backoff inverted", func(o *Options) { o.Backoff = backoff.Policy{Min: 2 * time.Second, Max: time.Second} }, "backoff"},
		{"ping without interval", func(o *Options) { o.KeepAlive = KeepAlive{Ping: []byte("ping")} }, "keep-alive"},
		{"pacing without burst", func(o *Options) { o.Connects = Rate{Every: time.Second} }, "connect pacing"},
		{"negative message pacing", func(o *Options) { o.ClientMessages = Rate{Every: -1, Burst: 1} }, "client message pacing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options()
			o.Exchange, o.Queue = toy{base: "ws://x"}, &collector{}
			tc.mutate(&o)
			_, err := New(o)
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("New = %v, want %q", err, tc.err)
			}
			if err != nil && o.Name != "" && !strings.HasPrefix(err.Error(), "toy: ") {
				t.Errorf("error %q does not name the exchange", err)
			}
		})
	}
}

func TestPacer(t *testing.T) {
	clk := clock.NewFake(t0)
	p := NewPacer(clk, Rate{Every: time.Second, Burst: 3})
	var got []time.Duration
	for range 5 {
		got = append(got, p.Reserve())
	}
	want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	clk.Advance(10 * time.Second) // the bucket refills, but only to its burst
	if !p.Allow() || !p.Allow() || !p.Allow() || p.Allow() {
		t.Fatal("after a long pause, want exactly a burst of 3")
	}
	// Binance's pace (burst 5, one per 1.25 s) stays under its 300
	// connection attempts per 5 minutes.
	d := NewPacer(clk, Rate{Every: 1250 * time.Millisecond, Burst: 5})
	n := 0
	for d.Reserve() <= 5*time.Minute {
		n++
	}
	if n >= 300 {
		t.Fatalf("%d attempts within 5 minutes", n)
	}
	// The zero Rate never waits.
	z := NewPacer(clk, Rate{})
	for range 100 {
		if z.Reserve() != 0 || !z.Allow() {
			t.Fatal("the zero Rate paced")
		}
	}
}

func TestShardsAndSubscribesInOrder(t *testing.T) {
	for _, tc := range []struct {
		streams []string
		perConn int
		want    []string // shards, one per connection
	}{
		{[]string{"A", "B", "C", "D", "E"}, 2, []string{"A,B", "C,D", "E"}},
		{[]string{"A", "B", "C", "D"}, 2, []string{"A,B", "C,D"}},
		{[]string{"A", "B", "C"}, 10, []string{"A,B,C"}},
		{[]string{"A", "B"}, 1, []string{"A", "B"}},
	} {
		t.Run(fmt.Sprintf("%d_by_%d", len(tc.streams), tc.perConn), func(t *testing.T) {
			o := options()
			o.Streams, o.PerConn = tc.streams, tc.perConn
			h := start(t, o, func(sc *serverConn) {
				// Tick only once every subscription arrived.
				testkit.Eventually(t, 5*time.Second, "subscriptions", func() bool { return len(sc.messages()) == len(sc.shard) })
				for _, s := range sc.shard {
					sc.send("tick " + s + " 1.50")
				}
				sc.waitGone()
			})
			h.waitTicks(t, len(tc.streams))
			var shards []string
			for _, sc := range h.s.connections() {
				shards = append(shards, strings.Join(sc.shard, ","))
				var want []string
				for _, s := range sc.shard {
					want = append(want, "sub "+s)
				}
				if got := sc.messages(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("conn %d got %q, want %q", sc.n, got, want)
				}
			}
			slices.Sort(shards)
			if fmt.Sprint(shards) != fmt.Sprint(tc.want) {
				t.Errorf("connections carry %v, want %v", shards, tc.want)
			}
			if got := h.f.Shards(); len(got) != len(tc.want) || len(h.f.URLs()) != len(tc.want) {
				t.Errorf("Shards() = %v, URLs() = %v", got, h.f.URLs())
			}
		})
	}
}

func TestSubscriptionsArePaced(t *testing.T) {
	o := options()
	o.Streams = []string{"A", "B", "C"}
	o.ClientMessages = Rate{Every: time.Second, Burst: 1}
	var sc0 *serverConn
	ready := make(chan struct{})
	h := start(t, o, func(sc *serverConn) {
		sc0 = sc
		close(ready)
		sc.waitGone()
	})
	<-ready
	testkit.Eventually(t, 5*time.Second, "first subscription", func() bool { return len(sc0.messages()) == 1 })
	h.waitTimers(t, 2) // the watchdog and the pacer's wait for the second
	for want := 2; want <= 3; want++ {
		h.clk.Advance(time.Second)
		testkit.Eventually(t, 5*time.Second, fmt.Sprintf("subscription %d", want), func() bool { return len(sc0.messages()) == want })
	}
}

func TestDialHonoursRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		header   string
		lo, hi   time.Duration // the delay before the second attempt
		dialErrs float64
	}{
		{"429 waits Retry-After", http.StatusTooManyRequests, "7", 7 * time.Second, 7 * time.Second, 1},
		{"418 (banned) waits Retry-After", http.StatusTeapot, "30", 30 * time.Second, 30 * time.Second, 1},
		{"429 without Retry-After backs off", http.StatusTooManyRequests, "", 500 * time.Millisecond, time.Second, 1},
		{"Retry-After shorter than the backoff keeps the backoff", http.StatusTooManyRequests, "0", 500 * time.Millisecond, time.Second, 1},
		{"503 ignores Retry-After", http.StatusServiceUnavailable, "60", 500 * time.Millisecond, time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const step = 250 * time.Millisecond
			h := start(t, options(), func(sc *serverConn) {
				sc.send("tick A 1")
				sc.waitGone()
			}, func(s *server) {
				s.reject = []int{tc.status}
				if tc.header != "" {
					s.header = http.Header{"Retry-After": {tc.header}}
				}
			})
			h.advanceUntil(t, step, "a connection after the refusal", func() bool { return len(h.out.symbols()) == 1 })
			at := h.s.attemptTimes()
			if len(at) != 2 {
				t.Fatalf("%d attempts, want 2", len(at))
			}
			if d := at[1].Sub(at[0]); d < tc.lo || d > tc.hi+step {
				t.Errorf("delay before the second attempt = %s, want within %s..%s", d, tc.lo, tc.hi)
			}
			if got := testutil.ToFloat64(h.m.DialErrors.WithLabelValues("toy")); got != tc.dialErrs {
				t.Errorf("dial_errors_total = %v, want %v", got, tc.dialErrs)
			}
			if err := h.f.Ready(context.Background()); err != nil {
				t.Errorf("Ready after connecting: %v", err)
			}
		})
	}
}

func TestWatchdogReplacesASilentConnection(t *testing.T) {
	o := options()
	o.StaleAfter = 30 * time.Second
	h := start(t, o, func(sc *serverConn) {
		sc.send("tick A 1")
		if sc.n > 0 {
			sc.send("tick A 2")
		}
		sc.waitGone() // then silence, the connection left open
	})
	h.waitTicks(t, 1)
	h.waitTimers(t, 1) // the watchdog (no lifetime limit)
	h.clk.Advance(29 * time.Second)
	if len(h.s.connections()) != 1 || h.reconnects("stale") != 0 {
		t.Fatal("replaced before StaleAfter passed")
	}
	h.clk.Advance(time.Second)
	h.advanceUntil(t, 50*time.Millisecond, "the replacement's ticks", func() bool { return len(h.out.symbols()) == 3 })
	if r := h.reconnects("stale"); r != 1 {
		t.Errorf("reconnects_total{stale} = %v, want 1", r)
	}
	if conns := h.s.connections(); conns[0].gone.Err() == nil {
		t.Error("the stale connection was not closed")
	}
}

// Planned replacements (our lifetime limit, the server's request) do not
// back off: no clock movement is needed for the new connection.
func TestPlannedReconnectsDoNotBackOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      func(o *Options)
		first  []string
		reason string
	}{
		{"max lifetime", func(o *Options) { o.MaxLifetime = time.Hour; o.StaleAfter = 2 * time.Hour }, []string{"tick A 1"}, "max_lifetime"},
		{"server asks", func(o *Options) {}, []string{"tick A 1", "bye"}, "server_shutdown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := options()
			tc.o(&o)
			h := start(t, o, func(sc *serverConn) {
				if sc.n == 0 {
					sc.send(tc.first...)
				} else {
					sc.send("tick B 1")
				}
				sc.waitGone()
			})
			h.waitTicks(t, 1)
			if tc.reason == "max_lifetime" {
				h.waitTimers(t, 2) // the watchdog and the lifetime
				h.clk.Advance(time.Hour - time.Millisecond)
				if len(h.s.connections()) != 1 {
					t.Fatal("replaced before MaxLifetime")
				}
				h.clk.Advance(time.Millisecond)
			}
			if got := h.waitTicks(t, 2); fmt.Sprint(got) != "[A B]" {
				t.Fatalf("ticks %v", got)
			}
			if r := h.reconnects(tc.reason); r != 1 {
				t.Errorf("reconnects_total{%s} = %v, want 1", tc.reason, r)
			}
			if conns := h.s.connections(); len(conns) != 2 || conns[0].gone.Err() == nil {
				t.Errorf("want the old connection closed and one new one; have %d", len(conns))
			}
		})
	}
}

func TestAppLevelPings(t *testing.T) {
	o := options()
	o.StaleAfter = time.Hour
	o.KeepAlive = KeepAlive{Ping: []byte(`{"op":"ping"}`), PingEvery: 20 * time.Second}
	ready := make(chan *serverConn, 1)
	h := start(t, o, func(sc *serverConn) {
		ready <- sc
		sc.waitGone()
	})
	sc := <-ready
	testkit.Eventually(t, 5*time.Second, "subscription", func() bool { return len(sc.messages()) == 1 })
	for n := 1; n <= 3; n++ {
		h.waitTimers(t, 2) // the watchdog and the ping
		h.clk.Advance(20 * time.Second)
		testkit.Eventually(t, 5*time.Second, fmt.Sprintf("ping %d", n), func() bool { return len(sc.messages()) == 1+n })
		sc.send("pong")
	}
	if got := sc.messages(); got[0] != "sub a" || got[3] != `{"op":"ping"}` {
		t.Errorf("client sent %q", got)
	}
	if testutil.CollectAndCount(h.m.Reconnects) != 0 || testutil.CollectAndCount(h.m.Malformed) != 0 {
		t.Error("pings or pongs were counted as trouble")
	}
}

func TestCountsSkippedFramesAndServerEvents(t *testing.T) {
	h := start(t, options(), func(sc *serverConn) {
		sc.send("tick A 1", "hello", "junk", "tick A x", "err slow down", "pong", "tick A 2")
		if err := sc.ws.Write(sc.s.ctx, websocket.MessageBinary, []byte{1}); err != nil {
			t.Errorf("binary write: %v", err)
		}
		sc.send("tick A 3")
		sc.waitGone()
	})
	h.waitTicks(t, 3)
	for reason, want := range map[string]float64{"unexpected_message": 1, ReasonBadJSON: 1, "bad_field": 1, ReasonBinary: 1} {
		if got := testutil.ToFloat64(h.m.Malformed.WithLabelValues("toy", reason)); got != want {
			t.Errorf("malformed_frames_total{%s} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(h.m.ServerEvents.WithLabelValues("toy", "error")); got != 1 {
		t.Errorf("server_events_total{error} = %v, want 1", got)
	}
	if testutil.CollectAndCount(h.m.Reconnects) != 0 {
		t.Error("bad frames caused a reconnect")
	}
}

// A queue that stops accepting ends the feed with an error naming it.
func TestQueueRefusalIsFatal(t *testing.T) {
	o := options()
	o.Exchange, o.Clock = nil, clock.NewFake(t0)
	s := newServer(t, o.Clock, func(sc *serverConn) {
		sc.send("tick A 1")
		sc.waitGone()
	})
	o.Exchange = toy{base: s.url()}
	o.Queue = refusing{}
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Run(ctx); err == nil || !errors.Is(err, ingest.ErrClosed) || !strings.HasPrefix(err.Error(), "toy: queue refused") {
		t.Fatalf("Run = %v, want the queue's refusal", err)
	}
}

type refusing struct{}

func (refusing) Enqueue(context.Context, *tick.Tick) error { return ingest.ErrClosed }
