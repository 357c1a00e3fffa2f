// Package wstest is the local exchange the WebSocket feed tests run
// against: a scripted coder/websocket server that records every handshake
// (on the test's clock), can refuse the next ones with given HTTP
// statuses, and keeps what each client sent; plus the receiving end (a
// Collector standing in for the ingest queue) and the fake-clock helpers
// those tests share. It is imported by tests only.
package wstest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/tick"
)

// Server is a local exchange. Each accepted connection runs the script in
// its own handler goroutine; the connection closes when the script
// returns.
type Server struct {
	t      testing.TB
	srv    *httptest.Server
	ctx    context.Context // ends at test cleanup, before the server closes
	clk    clock.Clock
	script func(c *Conn)

	mu       sync.Mutex
	conns    []*Conn
	attempts []time.Time // clock time of every handshake attempt
	reject   []int       // HTTP status for the next handshakes, in order
	header   http.Header // sent with a rejection
	onText   func(c *Conn, msg string)
}

// Conn is one accepted connection.
type Conn struct {
	N   int      // 0-based, in accept order
	URL *url.URL // what the client dialled (path and query)
	WS  *websocket.Conn
	// Gone ends when the client disconnects (or the test ends).
	Gone  context.Context
	Pongs atomic.Int32 // pongs the client sent

	s    *Server
	mu   sync.Mutex
	sent []string // text messages from the client, in order
}

// NewServer starts a server stamping handshakes with clk's time.
func NewServer(t testing.TB, clk clock.Clock, script func(c *Conn)) *Server {
	s := &Server{t: t, clk: clk, script: script}
	ctx, cancel := context.WithCancel(context.Background())
	s.ctx = ctx
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	t.Cleanup(cancel) // runs first: unblocks scripts waiting on Gone
	return s
}

// URL is the server's ws:// base URL.
func (s *Server) URL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") }

// Context ends when the test does.
func (s *Server) Context() context.Context { return s.ctx }

// Reject answers the next len(statuses) handshakes with those statuses, in
// order, each with header.
func (s *Server) Reject(header http.Header, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = append(s.reject, statuses...)
	s.header = header
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
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
	c := &Conn{N: len(s.conns), URL: r.URL, s: s}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OnPongReceived: func(context.Context, []byte) { c.Pongs.Add(1) },
	})
	if err != nil {
		s.mu.Unlock()
		s.t.Errorf("accept: %v", err)
		return
	}
	c.WS = ws
	// Gone is set before the connection is listed: tests read it from
	// Conns.
	gone, leave := context.WithCancel(s.ctx)
	c.Gone = gone
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	defer ws.CloseNow()
	// Reading answers control frames (pings, close) and keeps what the
	// client sends; Gone ends when it leaves.
	go func() {
		defer leave()
		for {
			_, b, err := ws.Read(gone)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.sent = append(c.sent, string(b))
			c.mu.Unlock()
			s.mu.Lock()
			fn := s.onText
			s.mu.Unlock()
			if fn != nil {
				fn(c, string(b))
			}
		}
	}()
	s.script(c)
}

// OnText calls fn with every text message a client sends, from the
// connection's reader, in order: for an exchange's answers to requests
// (subscribe acks, application-level pongs). fn may Send.
func (s *Server) OnText(fn func(c *Conn, msg string)) {
	s.mu.Lock()
	s.onText = fn
	s.mu.Unlock()
}

// Conns are the accepted connections so far.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

// Attempts are the clock times of every handshake, refused ones included.
func (s *Server) Attempts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attempts)
}

// Send writes text frames; it fails the test only if the client is still
// there to read them.
func (c *Conn) Send(frames ...string) {
	for _, f := range frames {
		if err := c.WS.Write(c.s.ctx, websocket.MessageText, []byte(f)); err != nil {
			if c.Gone.Err() == nil {
				c.s.t.Errorf("conn %d: write: %v", c.N, err)
			}
			return
		}
	}
}

// Sent are the text messages the client sent so far, in order.
func (c *Conn) Sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent)
}

// Context ends when the test does, not when the client leaves: for writes
// the script makes itself.
func (c *Conn) Context() context.Context { return c.s.ctx }

// WaitGone blocks until the client closes the connection.
func (c *Conn) WaitGone() { <-c.Gone.Done() }

// Collector is an ingest.Enqueuer that keeps every tick it gets.
type Collector struct {
	mu    sync.Mutex
	ticks []tick.Tick
}

// Enqueue keeps a copy of t.
func (c *Collector) Enqueue(_ context.Context, t *tick.Tick) error {
	c.mu.Lock()
	c.ticks = append(c.ticks, *t)
	c.mu.Unlock()
	return nil
}

// Ticks are the ticks so far, in arrival order.
func (c *Collector) Ticks() []tick.Tick {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ticks)
}

// WaitFor waits until at least n ticks arrived and returns them.
func (c *Collector) WaitFor(t testing.TB, n int) []tick.Tick {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("%d ticks", n), func() bool { return len(c.Ticks()) >= n })
	return c.Ticks()
}

// WaitTimers waits until n timers are pending on clk.
func WaitTimers(t testing.TB, clk *clock.Fake, n int) {
	t.Helper()
	if !clk.WaitTimersFor(n, 5*time.Second) {
		t.Fatalf("timed out waiting for %d pending timers (have %d)", n, clk.Pending())
	}
}

// AdvanceUntil moves clk by step whenever a timer waits, until cond holds:
// for waits whose exact length is random (jittered backoff).
func AdvanceUntil(t testing.TB, clk *clock.Fake, step time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, what, func() bool {
		if cond() {
			return true
		}
		if clk.Pending() > 0 {
			clk.Advance(step)
		}
		return false
	})
}

// Run runs feed until the test ends; then it cancels it and fails the test
// unless Run returns nil within 5 s, as a feed must on cancellation.
func Run(t testing.TB, feed interface{ Run(context.Context) error }) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
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
}
