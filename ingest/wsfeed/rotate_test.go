package wsfeed

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/wstest"
	"github.com/tickflow/tickflow/tick"
)

// toyFrames is the toy as a FrameExchange, adding "trade <SYMBOL> <id>
// <time>" and "quote <SYMBOL> <update id> <time>"; ticks carry a time:
// "tick <SYMBOL> <price> <time>".
type toyFrames struct{ toy }

func (x toyFrames) NewDecoder([]string) FrameDecoder { return toyDecoder{x.toy} }

type toyDecoder struct{ x toy }

func (d toyDecoder) DecodeFrame(frame []byte, recv int64, f *wire.Frame) (Event, error) {
	p := strings.Fields(string(frame))
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	switch {
	case len(p) == 4 && p[0] == "trade":
		tr := tick.Trade{Exchange: "toy", Symbol: p[1], Side: tick.Buy, TradeID: p[2], Timestamp: num(p[3]), ReceivedAt: recv}
		tr.Price.SetInt64(1)
		tr.Size.SetInt64(1)
		f.Kind, f.Trades = wire.Data, append(f.Trades, tr)
		f.Seqs = append(f.Seqs, wire.Seq{Channel: "trade", Symbol: p[1], Field: "id", Value: uint64(num(p[2])), Contiguous: true})
		return Event{Kind: Tick}, nil
	case len(p) == 4 && p[0] == "quote":
		q := tick.Quote{Exchange: "toy", Symbol: p[1], Timestamp: num(p[3]), ReceivedAt: recv}
		q.Bid.SetInt64(1)
		q.Ask.SetInt64(2)
		f.Kind, f.Quotes = wire.Data, append(f.Quotes, q)
		f.Seqs = append(f.Seqs, wire.Seq{Channel: "quote", Symbol: p[1], Field: "u", Value: uint64(num(p[2]))})
		return Event{Kind: Tick}, nil
	}
	var t tick.Tick
	ev, err := d.x.Decode(frame, &t)
	if err == nil && ev.Kind == Tick {
		t.ReceivedAt = recv
		f.Kind, f.Ticks = wire.Data, append(f.Ticks, t)
	}
	return ev, err
}

// records lists what reached the sinks, per pair and kind, in order:
// "A tick 1000", "A trade 7", "A quote 3".
func (h *harness) records() map[string][]string {
	out := map[string][]string{}
	for _, t := range h.out.Ticks() {
		out[t.Symbol+" tick"] = append(out[t.Symbol+" tick"], strconv.FormatInt(t.Timestamp, 10))
	}
	for _, t := range h.trades.All() {
		out[t.Symbol+" trade"] = append(out[t.Symbol+" trade"], t.TradeID)
	}
	for _, q := range h.quotes.All() {
		out[q.Symbol+" quote"] = append(out[q.Symbol+" quote"], strconv.FormatInt(q.Timestamp, 10))
	}
	return out
}

func (h *harness) count() int {
	return len(h.out.Ticks()) + len(h.trades.All()) + len(h.quotes.All())
}

func (h *harness) rotations(reason, result string) float64 {
	return testutil.ToFloat64(h.f.rotations.WithLabelValues("toy", reason, result))
}

func (h *harness) duplicates(t *testing.T, kind string) float64 {
	return wstest.Counter(t, h.reg, "tickflow_ingest_duplicates_dropped_total", map[string]string{"exchange": "toy", "kind": kind})
}

// rotationOptions: streams A and B, a lifetime of an hour, a watchdog far
// off, an overlap of a minute.
func rotationOptions() Options {
	o := options()
	o.Exchange = toyFrames{}
	o.Streams = []string{"A", "B"}
	o.MaxLifetime, o.StaleAfter, o.Overlap = time.Hour, 3*time.Hour, time.Minute
	return o
}

// A rotation, for either cause, delivers every record exactly once and in
// order per pair: the old connection keeps delivering after the new one
// is up, closes only after the new one delivered, what both sent is
// passed once, and no gap is recorded. It needs no backoff.
func TestRotationDeliversEveryRecordOnce(t *testing.T) {
	phase1 := []string{"tick A 1 1000", "tick B 1 1000", "trade A 1 1000", "quote A 1 1000"}
	// Sent by both connections: the overlap.
	phase2 := []string{"tick A 1 2000", "tick B 1 2000", "trade A 2 2000", "trade A 3 2000", "quote A 2 2000"}
	// Sent by the new connection only.
	phase3 := []string{"tick A 1 3000", "tick B 1 3000", "trade A 4 3000", "quote A 3 3000"}
	for _, tc := range []struct {
		name, reason string
		notice       bool
	}{
		{"max lifetime", "max_lifetime", false},
		{"server notice", "server_shutdown", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newUp, release := make(chan struct{}), make(chan struct{})
			h := start(t, rotationOptions(), func(sc *serverConn) {
				switch sc.N {
				case 0:
					testkit.Eventually(t, 5*time.Second, "subscriptions", func() bool { return len(sc.Sent()) == 2 })
					sc.Send(phase1...)
					if tc.notice {
						sc.Send("bye")
					}
					select {
					case <-newUp:
					case <-sc.Gone.Done():
						return
					}
					sc.Send(phase2...)
				case 1:
					close(newUp)
					select {
					case <-release:
					case <-sc.Gone.Done():
						return
					}
					sc.Send(phase2...)
					sc.Send(phase3...)
				}
				sc.WaitGone()
			})
			testkit.Eventually(t, 5*time.Second, "phase 1", func() bool { return h.count() >= len(phase1) })
			if !tc.notice {
				wstest.WaitTimers(t, h.clk, 2) // the watchdog and the lifetime
				h.clk.Advance(time.Hour)
			}
			// The old connection delivers phase 2 while the new one is up
			// and subscribed but silent.
			testkit.Eventually(t, 5*time.Second, "phase 2 from the old connection", func() bool {
				return h.count() == len(phase1)+len(phase2)
			})
			conns := h.s.Conns()
			testkit.Eventually(t, 5*time.Second, "the new connection's subscriptions", func() bool { return len(conns[1].Sent()) == 2 })
			if conns[0].Gone.Err() != nil {
				t.Fatal("the old connection closed before the new one delivered")
			}
			if g := testutil.ToFloat64(h.m.Connections.WithLabelValues("toy")); g != 2 {
				t.Errorf("connections = %v during the overlap, want 2", g)
			}
			close(release)
			testkit.Eventually(t, 5*time.Second, "phase 3", func() bool { return h.count() == len(phase1)+len(phase2)+len(phase3) })
			testkit.Eventually(t, 5*time.Second, "the old connection closed", func() bool { return conns[0].Gone.Err() != nil })
			testkit.Eventually(t, 5*time.Second, "the rotation counted", func() bool { return h.rotations(tc.reason, "done") == 1 })

			want := map[string][]string{
				"A tick": {"1000", "2000", "3000"}, "B tick": {"1000", "2000", "3000"},
				"A trade": {"1", "2", "3", "4"}, "A quote": {"1000", "2000", "3000"},
			}
			if got := h.records(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
			for kind, n := range map[string]float64{"tick": 2, "trade": 2, "quote": 1} {
				if got := h.duplicates(t, kind); got != n {
					t.Errorf("duplicates_dropped_total{%s} = %v, want %v", kind, got, n)
				}
			}
			if r := h.reconnects(tc.reason); r != 1 {
				t.Errorf("reconnects_total{%s} = %v, want 1", tc.reason, r)
			}
			if g := h.gaps.All(); len(g) != 0 {
				t.Errorf("gaps %+v across a rotation", g)
			}
			if n := len(h.s.Conns()); n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
			// No backoff: the new connection was dialled the moment the
			// rotation was asked for.
			want0 := t0
			if !tc.notice {
				want0 = t0.Add(time.Hour)
			}
			if at := h.s.Attempts(); !at[1].Equal(want0) {
				t.Errorf("new connection dialled at %s, want %s", at[1], want0)
			}
		})
	}
}

// A new connection that does not come up, or comes up and delivers
// nothing within the overlap while the old one does, is counted as a
// failed rotation and closed; the old connection stays and keeps
// delivering.
func TestFailedRotationKeepsTheOldConnection(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse bool
	}{
		{"dial refused", true},
		{"new connection silent", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			during, more := make(chan struct{}), make(chan struct{})
			h := start(t, rotationOptions(), func(sc *serverConn) {
				if sc.N == 0 {
					sc.Send("tick A 1 1000", "tick B 1 1000")
					for _, c := range []struct {
						ch    chan struct{}
						frame string
					}{{during, "tick B 1 1500"}, {more, "tick A 1 2000"}} {
						select {
						case <-c.ch:
							sc.Send(c.frame)
						case <-sc.Gone.Done():
							return
						}
					}
				}
				sc.WaitGone()
			})
			h.out.WaitFor(t, 2)
			if tc.refuse {
				h.s.Reject(nil, http.StatusServiceUnavailable)
			}
			wstest.WaitTimers(t, h.clk, 2) // the watchdog and the lifetime
			h.clk.Advance(time.Hour)
			if !tc.refuse {
				testkit.Eventually(t, 5*time.Second, "the new connection", func() bool { return len(h.s.Conns()) == 2 })
				// The old connection delivers while the new one is silent.
				close(during)
				h.out.WaitFor(t, 3)
				// The old watchdog, the new one's watchdog and lifetime,
				// and the rotation's wait for its first record.
				wstest.WaitTimers(t, h.clk, 4)
				h.clk.Advance(time.Minute)
				testkit.Eventually(t, 5*time.Second, "the silent connection closed", func() bool { return h.s.Conns()[1].Gone.Err() != nil })
			}
			testkit.Eventually(t, 5*time.Second, "the failure counted", func() bool { return h.rotations("max_lifetime", "failed") == 1 })
			if tc.refuse {
				close(during)
			}
			close(more)
			got := h.out.WaitFor(t, 4)
			if got[3].Symbol != "A" || got[3].Timestamp != 2000 {
				t.Errorf("tick after the failed rotation %+v", got[3])
			}
			if h.s.Conns()[0].Gone.Err() != nil {
				t.Error("the old connection closed")
			}
			if n := testutil.CollectAndCount(h.m.Reconnects); n != 0 {
				t.Errorf("%d reconnect series after a failed rotation", n)
			}
			if h.rotations("max_lifetime", "done") != 0 {
				t.Error("a failed rotation counted as done")
			}
			if g := h.gaps.All(); len(g) != 0 {
				t.Errorf("gaps %+v", g)
			}
			var want float64
			if tc.refuse {
				want = 1
			}
			if got := testutil.ToFloat64(h.m.DialErrors.WithLabelValues("toy")); got != want {
				t.Errorf("dial_errors_total = %v, want %v", got, want)
			}
		})
	}
}

// A shard so quiet that neither connection delivers within the overlap
// hands over when it ends: the old connection has nothing the new one
// would miss.
func TestQuietShardRotates(t *testing.T) {
	h := start(t, rotationOptions(), func(sc *serverConn) {
		if sc.N == 0 {
			sc.Send("tick A 1 1000")
		} else {
			sc.Send("pong") // alive, no data
		}
		sc.WaitGone()
	})
	h.out.WaitFor(t, 1)
	wstest.WaitTimers(t, h.clk, 2)
	h.clk.Advance(time.Hour)
	testkit.Eventually(t, 5*time.Second, "the new connection", func() bool { return len(h.s.Conns()) == 2 })
	wstest.WaitTimers(t, h.clk, 4)
	h.clk.Advance(time.Minute)
	old := h.s.Conns()[0]
	testkit.Eventually(t, 5*time.Second, "the old connection closed", func() bool { return old.Gone.Err() != nil })
	testkit.Eventually(t, 5*time.Second, "the rotation counted", func() bool { return h.rotations("max_lifetime", "done") == 1 })
	if h.s.Conns()[1].Gone.Err() != nil || h.rotations("max_lifetime", "failed") != 0 {
		t.Error("the new connection was given up")
	}
}

// When the old connection ends by itself before the new one delivered,
// the new one takes over and the drop is a reconnect with its gaps, for
// the pairs the new one had not delivered yet.
func TestOldConnectionEndsDuringRotation(t *testing.T) {
	oldGone := make(chan struct{})
	h := start(t, rotationOptions(), func(sc *serverConn) {
		switch sc.N {
		case 0:
			sc.Send("tick A 1 1000", "tick B 1 1000")
			<-sc.Gone.Done()
			close(oldGone)
			return
		case 1:
			sc.Send("tick A 1 1500")
			select {
			case <-oldGone:
			case <-sc.Gone.Done():
				return
			}
			sc.Send("tick A 1 2000", "tick B 1 2000")
		}
		sc.WaitGone()
	})
	h.out.WaitFor(t, 2)
	wstest.WaitTimers(t, h.clk, 2)
	h.clk.Advance(time.Hour)
	testkit.Eventually(t, 5*time.Second, "the new connection", func() bool { return len(h.s.Conns()) == 2 })
	h.out.WaitFor(t, 3) // A 1500 from the new connection
	// The server closes the old connection before the new one delivered B.
	h.s.Conns()[0].WS.Close(websocket.StatusGoingAway, "maintenance")
	got := h.out.WaitFor(t, 5)
	if fmt.Sprint(h.records()) != "map[A tick:[1000 1500 2000] B tick:[1000 2000]]" {
		t.Errorf("delivered %v (%d ticks)", h.records(), len(got))
	}
	testkit.Eventually(t, 5*time.Second, "the reconnect counted", func() bool { return h.reconnects("closed_by_server") == 1 })
	if h.rotations("max_lifetime", "old_ended_first") != 1 || h.rotations("max_lifetime", "done") != 0 {
		t.Error("rotation results miscounted")
	}
	// B's gap only: the new connection had delivered A already.
	if g := h.gaps.All(); len(g) != 1 || g[0].Symbol != "B" || g[0].From != 1000 || g[0].To != 2000 || g[0].Cause != "closed_by_server" {
		t.Errorf("gaps %+v", g)
	}
}

// The filter's rules, record by record.
func TestDedup(t *testing.T) {
	const overlap = int64(time.Minute)
	a, b := &session{}, &session{}
	tk := func(sym string, ts int64) *tick.Tick { return &tick.Tick{Symbol: sym, Timestamp: ts} }
	tr := func(id string, ts int64) *tick.Trade { return &tick.Trade{Symbol: "A", TradeID: id, Timestamp: ts} }
	d := dedup{overlap: overlap}
	steps := []struct {
		what string
		pass bool
	}{
		{"a tick 10", d.tick(a, tk("A", 10), 0)},
		{"a tick 10 again: same connection, kept", d.tick(a, tk("A", 10), 0)},
		{"b tick 10: delivered already", !d.tick(b, tk("A", 10), 0)},
		{"b tick 9: older", !d.tick(b, tk("A", 9), 0)},
		{"b tick 11", d.tick(b, tk("A", 11), 0)},
		{"a tick 11: b delivered it", !d.tick(a, tk("A", 11), 0)},
		{"b tick B 1: another pair", d.tick(b, tk("B", 1), 0)},
		{"a trade x", d.trade(a, tr("x", 100), 0)},
		{"b trade x: same id", !d.trade(b, tr("x", 100), 0)},
		{"b trade y at the same time", d.trade(b, tr("y", 100), 0)},
		{"a trade w, older than y", !d.trade(a, tr("w", 99), 0)},
		{"a quote u5", d.quote(a, &tick.Quote{Symbol: "A", Timestamp: 1}, 5, 0)},
		{"b quote u5 at another time", !d.quote(b, &tick.Quote{Symbol: "A", Timestamp: 2}, 5, 0)},
		{"b quote u6", d.quote(b, &tick.Quote{Symbol: "A", Timestamp: 2}, 6, 0)},
	}
	// a closes, part of a rotation: its marks bind b for overlap only.
	a.closedAt, a.overlapped = 1, true
	d.tick(a, tk("C", 50), 0)
	steps = append(steps, []struct {
		what string
		pass bool
	}{
		{"b tick C 40 within the overlap", !d.tick(b, tk("C", 40), 1+overlap-1)},
		{"b tick C 40 after the overlap", d.tick(b, tk("C", 40), 1+overlap)},
	}...)
	// A connection that ended by itself binds nobody: a reconnect passes
	// everything, as before rotations.
	c := &session{closedAt: 1}
	d.tick(c, tk("D", 50), 0)
	steps = append(steps, struct {
		what string
		pass bool
	}{"b tick D 40 after a plain drop", d.tick(b, tk("D", 40), 2)})
	for _, s := range steps {
		if !s.pass {
			t.Errorf("%s: wrong decision", s.what)
		}
	}
}
