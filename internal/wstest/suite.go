package wstest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/tick"
)

// Source describes one exchange source to the shared source tests
// (RunSourceSuite): how to start it against a local server and what that
// server says in the exchange's documented format.
type Source struct {
	Exchange string
	Symbol   string // the one native symbol the tests subscribe
	// Start builds the source for Symbol against url, with the stale
	// watchdog far off (the tests move the clock by whole ping intervals)
	// and backoff_min 1 s, and runs it until the test ends (Run).
	Start func(t *testing.T, url string, env SourceEnv)
	// IsSubscribe reports whether a client message is a subscribe request.
	IsSubscribe func(msg string) bool
	// Acks are the server's answers to a subscribe request.
	Acks func(msg string) []string
	// SubscribeError is the server's refusal of a subscribe request.
	SubscribeError func(msg string) string
	// Data is one ticker frame for Symbol with last price price at
	// exchange time ts (Unix ms).
	Data func(price string, ts int64) string
	// Bad are frames the source must skip and count under their reason:
	// missing fields, empty strings for numbers, streams not subscribed.
	Bad []BadFrame
	// WantSubscribe are substrings the subscribe requests must hold
	// between them (Coinbase's heartbeats channel).
	WantSubscribe []string
	// Ping is the client's application ping and Pong the server's answer;
	// empty for exchanges without one.
	Ping, Pong string
	PingEvery  time.Duration
	// Notice is a server message announcing a close (OKX 64008, Kraken
	// maintenance); empty when the exchange has none.
	Notice string
	// Unknown is Data with fields the decoder has never heard of; it must
	// still give its tick (price UnknownPrice).
	Unknown      string
	UnknownPrice string
	// Trade, when set, is one trade frame for Symbol with trade id id at
	// ts: the suite then runs Start with SourceEnv.Trades set (the source
	// follows trades) and checks trades and trade-id gaps.
	Trade func(id uint64, price string, ts int64) string
	// TradeIDsContiguous: the exchange numbers a pair's trades one by one,
	// so a skipped id is a gap (OKX, Kraken, Coinbase; not Bybit).
	TradeIDsContiguous bool
}

// BadFrame is a frame to skip and the reason it is counted under.
type BadFrame struct {
	Name, Frame, Reason string
}

// SourceEnv is what Start wires the source to.
type SourceEnv struct {
	Clock   *clock.Fake
	Queue   *Collector
	Metrics *prometheus.Registry
	Gaps    *Gaps
	// Trades is set for the trade test only: the source must follow trades
	// and hand them to it.
	Trades *Trades
}

// collected is a list records are added to from any goroutine.
type collected[T any] struct {
	mu    sync.Mutex
	items []T
}

func (c *collected[T]) add(v *T) {
	c.mu.Lock()
	c.items = append(c.items, *v)
	c.mu.Unlock()
}

// All are the records so far.
func (c *collected[T]) All() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.items)
}

// Trades collects trades (an ingest.TradeSink).
type Trades struct{ collected[tick.Trade] }

// RecordTrade keeps a copy of t.
func (c *Trades) RecordTrade(_ context.Context, t *tick.Trade) { c.add(t) }

// Quotes collects best bid/ask quotes (an ingest.QuoteSink).
type Quotes struct{ collected[tick.Quote] }

// RecordQuote keeps a copy of q.
func (c *Quotes) RecordQuote(_ context.Context, q *tick.Quote) { c.add(q) }

// Gaps collects gap records (an ingest.GapSink).
type Gaps struct{ collected[tick.Gap] }

// RecordGap keeps a copy of gap.
func (g *Gaps) RecordGap(_ context.Context, gap *tick.Gap) { g.add(gap) }

// Counter reads a counter of reg by name and label values in label order
// ("exchange", "reason"); 0 when absent.
func Counter(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if matches(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.Label {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

type suiteRun struct {
	s   *Server
	env SourceEnv
}

func startSuite(t *testing.T, src Source, onText func(c *Conn, msg string), trades ...*Trades) suiteRun {
	t.Helper()
	env := SourceEnv{Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), Queue: &Collector{},
		Metrics: prometheus.NewRegistry(), Gaps: &Gaps{}}
	if len(trades) > 0 {
		env.Trades = trades[0]
	}
	s := NewServer(t, env.Clock, func(c *Conn) { c.WaitGone() })
	s.OnText(func(c *Conn, msg string) {
		if src.Ping != "" && msg == src.Ping {
			c.Send(src.Pong)
			return
		}
		onText(c, msg)
	})
	src.Start(t, s.URL(), env)
	return suiteRun{s, env}
}

// subscribed answers subscribes with acks, then sends frames.
func subscribed(src Source, frames ...func(c *Conn) []string) func(c *Conn, msg string) {
	return func(c *Conn, msg string) {
		if !src.IsSubscribe(msg) {
			return
		}
		c.Send(src.Acks(msg)...)
		for _, f := range frames {
			c.Send(f(c)...)
		}
	}
}

func waitConns(t *testing.T, r suiteRun, n int) []*Conn {
	t.Helper()
	AdvanceUntil(t, r.env.Clock, 500*time.Millisecond, "connection", func() bool { return len(r.s.Conns()) >= n })
	return r.s.Conns()
}

// RunSourceSuite runs the tests every exchange source passes against a
// local server speaking its format: subscribe → ack → ticks with the
// frame's exact decimals; unknown fields kept out, missing fields, empty
// numbers and foreign streams counted as malformed with their reasons;
// data before the subscribe ack; a subscribe error counted while the
// connection stays; pings on schedule; a server close and a rate-limit
// close reconnecting after a backoff, leaving a gap record; the exchange's
// close notice rotating make-before-break, with no gap.
func RunSourceSuite(t *testing.T, src Source) {
	const p1, p2 = "50000.10", "50001.20"
	t.Run("ticks", func(t *testing.T) {
		r := startSuite(t, src, func(c *Conn, msg string) {
			if !src.IsSubscribe(msg) {
				return
			}
			// Data before the ack: the real feeds do it.
			c.Send(src.Data(p1, 1767323045000))
			c.Send(src.Acks(msg)...)
			for _, b := range src.Bad {
				c.Send(b.Frame)
			}
			c.Send(src.Unknown, src.Data(p2, 1767323046000))
		})
		got := r.env.Queue.WaitFor(t, 3)
		want := []string{p1, src.UnknownPrice, p2}
		for i, tk := range got[:3] {
			if tk.Exchange != src.Exchange || tk.Symbol != src.Symbol || tk.Price.String() != want[i] || tk.ReceivedAt == 0 {
				t.Errorf("tick %d: %s %s %s recv %d, want %s %s %s", i, tk.Exchange, tk.Symbol, tk.Price.String(), tk.ReceivedAt, src.Exchange, src.Symbol, want[i])
			}
		}
		if got[0].Timestamp != 1767323045000 || got[2].Timestamp != 1767323046000 {
			t.Errorf("timestamps %d, %d", got[0].Timestamp, got[2].Timestamp)
		}
		reasons := map[string]int{}
		for _, b := range src.Bad {
			reasons[b.Reason]++
		}
		for reason, n := range reasons {
			testkit.Eventually(t, 5*time.Second, "malformed "+reason, func() bool {
				return Counter(t, r.env.Metrics, "tickflow_ingest_malformed_frames_total",
					map[string]string{"exchange": src.Exchange, "reason": reason}) == float64(n)
			})
		}
		if v := Counter(t, r.env.Metrics, "tickflow_ingest_ticks_received_total", map[string]string{"exchange": src.Exchange, "symbol": src.Symbol}); v != 3 {
			t.Errorf("ticks_received_total = %v, want 3", v)
		}
		for _, w := range append(src.WantSubscribe, src.Symbol) {
			testkit.Eventually(t, 5*time.Second, "subscribe requests holding "+w, func() bool {
				return strings.Contains(strings.Join(r.s.Conns()[0].Sent(), "\n"), w)
			})
		}
	})

	t.Run("subscribe error", func(t *testing.T) {
		r := startSuite(t, src, func(c *Conn, msg string) {
			if src.IsSubscribe(msg) {
				c.Send(src.SubscribeError(msg))
			}
		})
		testkit.Eventually(t, 5*time.Second, "subscribe_error counted", func() bool {
			return Counter(t, r.env.Metrics, "tickflow_ingest_server_events_total",
				map[string]string{"exchange": src.Exchange, "event": "subscribe_error"}) >= 1
		})
		if n := len(r.s.Conns()); n != 1 {
			t.Errorf("%d connections after a subscribe error, want the first kept", n)
		}
	})

	if src.Ping != "" {
		t.Run("pings on schedule", func(t *testing.T) {
			r := startSuite(t, src, subscribed(src, func(*Conn) []string { return []string{src.Data(p1, 1767323045000)} }))
			r.env.Queue.WaitFor(t, 1)
			c := r.s.Conns()[0]
			for i := 1; i <= 3; i++ {
				// The watchdog's timer and the keep-alive's sleep.
				WaitTimers(t, r.env.Clock, 2)
				r.env.Clock.Advance(src.PingEvery)
				testkit.Eventually(t, 5*time.Second, "ping", func() bool {
					n := 0
					for _, m := range c.Sent() {
						if m == src.Ping {
							n++
						}
					}
					return n == i
				})
			}
			if n := len(r.s.Conns()); n != 1 {
				t.Errorf("%d connections, want 1: pings keep it", n)
			}
		})
	}

	closeTest := func(name string, code websocket.StatusCode, why string) {
		t.Run(name, func(t *testing.T) {
			r := startSuite(t, src, subscribed(src, func(c *Conn) []string {
				return []string{src.Data([]string{p1, p2}[min(c.N, 1)], 1767323045000+int64(c.N)*60000)}
			}))
			r.env.Queue.WaitFor(t, 1)
			r.s.Conns()[0].WS.Close(code, why)
			conns := waitConns(t, r, 2)
			got := r.env.Queue.WaitFor(t, 2)
			if got[1].Price.String() != p2 {
				t.Errorf("tick after reconnect %s, want %s", got[1].Price.String(), p2)
			}
			if at := r.s.Attempts(); at[1].Sub(at[0]) < 500*time.Millisecond {
				t.Errorf("reconnected %s after the close, want a backoff of at least 500ms", at[1].Sub(at[0]))
			}
			_ = conns
			if v := Counter(t, r.env.Metrics, "tickflow_ingest_reconnects_total", map[string]string{"exchange": src.Exchange, "reason": "closed_by_server"}); v != 1 {
				t.Errorf("reconnects_total{closed_by_server} = %v", v)
			}
			testkit.Eventually(t, 5*time.Second, "gap", func() bool { return len(r.env.Gaps.All()) == 1 })
			g := r.env.Gaps.All()[0]
			want := tick.Gap{Exchange: src.Exchange, Symbol: src.Symbol, From: 1767323045000, To: 1767323105000,
				Reason: tick.GapReconnect, Cause: "closed_by_server", DetectedAt: g.DetectedAt}
			if g != want {
				t.Errorf("gap %+v, want %+v", g, want)
			}
			if v := Counter(t, r.env.Metrics, "tickflow_ingest_gaps_total", map[string]string{"exchange": src.Exchange, "reason": "reconnect"}); v != 1 {
				t.Errorf("gaps_total = %v", v)
			}
		})
	}
	closeTest("server close reconnects with backoff", websocket.StatusGoingAway, "restart")
	closeTest("rate-limit close reconnects with backoff", websocket.StatusPolicyViolation, "rate limit exceeded")

	if src.Trade != nil {
		t.Run("trades and trade-id gaps", func(t *testing.T) {
			trades := &Trades{}
			r := startSuite(t, src, subscribed(src, func(*Conn) []string {
				return []string{src.Trade(100, "50000.1", 1767323045000), src.Trade(101, "50000.2", 1767323045100),
					src.Trade(105, "50000.3", 1767323045900)}
			}), trades)
			testkit.Eventually(t, 5*time.Second, "3 trades", func() bool { return len(trades.All()) >= 3 })
			got := trades.All()
			for i, want := range []string{"50000.1", "50000.2", "50000.3"} {
				if got[i].Exchange != src.Exchange || got[i].Symbol != src.Symbol || got[i].Price.String() != want || !got[i].Side.Valid() {
					t.Errorf("trade %d: %+v", i, got[i])
				}
			}
			if !src.TradeIDsContiguous {
				if g := r.env.Gaps.All(); len(g) != 0 {
					t.Errorf("gaps %+v from ids that need not be contiguous", g)
				}
				return
			}
			testkit.Eventually(t, 5*time.Second, "a sequence gap", func() bool { return len(r.env.Gaps.All()) == 1 })
			g := r.env.Gaps.All()[0]
			if g.Reason != tick.GapSequence || g.Symbol != src.Symbol || g.FromSeq != 101 || g.ToSeq != 105 ||
				g.From != 1767323045100 || g.To != 1767323045900 {
				t.Errorf("gap %+v", g)
			}
			if n := len(r.env.Queue.Ticks()); n != 0 {
				t.Errorf("%d ticks from trade frames", n)
			}
		})
	}

	if src.Notice != "" {
		t.Run("close notice rotates make-before-break", func(t *testing.T) {
			r := startSuite(t, src, subscribed(src, func(c *Conn) []string {
				return []string{src.Data(p1, 1767323045000+int64(c.N)*1000)}
			}))
			r.env.Queue.WaitFor(t, 1)
			old := r.s.Conns()[0]
			old.Send(src.Notice)
			waitConns(t, r, 2)
			got := r.env.Queue.WaitFor(t, 2)
			if got[1].Timestamp != 1767323046000 {
				t.Errorf("second tick at %d, want the new connection's", got[1].Timestamp)
			}
			// The old connection closes once the new one delivered the pair.
			testkit.Eventually(t, 5*time.Second, "the old connection closed", func() bool { return old.Gone.Err() != nil })
			testkit.Eventually(t, 5*time.Second, "the rotation counted", func() bool {
				return Counter(t, r.env.Metrics, "tickflow_ingest_rotations_total",
					map[string]string{"exchange": src.Exchange, "reason": "server_notice", "result": "done"}) == 1
			})
			if v := Counter(t, r.env.Metrics, "tickflow_ingest_reconnects_total", map[string]string{"exchange": src.Exchange, "reason": "server_notice"}); v != 1 {
				t.Errorf("reconnects_total{server_notice} = %v", v)
			}
			// That it skips the backoff is wsfeed's (its rotation tests):
			// here the fake clock moves on while the real redial is under
			// way, so the handshake times cannot tell.
			if g := r.env.Gaps.All(); len(g) != 0 {
				t.Errorf("gaps %+v across a make-before-break rotation", g)
			}
		})
	}
}

// Bad is a BadFrame.
func Bad(name, frame, reason string) BadFrame { return BadFrame{name, frame, reason} }
