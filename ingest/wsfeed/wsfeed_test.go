package wsfeed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
	"github.com/tickflow/tickflow/internal/wstest"
	"github.com/tickflow/tickflow/tick"
)

// ---- a toy exchange: a format small enough to read at a glance ----
//
// The URL carries the shard as ?s=a,b; each subscribe message is "sub <stream>";
// frames are "tick <SYMBOL> <price> [<time>]", "pong", "err <detail>", "bye"
// (asks for a new connection); anything else is malformed. toyFrames (in
// rotate_test.go) adds trades and quotes.

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
	case (len(f) == 3 || len(f) == 4) && f[0] == "tick":
		*t = tick.Tick{Exchange: "toy", Symbol: f[1], Timestamp: 1}
		if len(f) == 4 {
			ts, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil {
				return Event{}, &Malformed{"bad_field", err.Error()}
			}
			t.Timestamp = ts
		}
		for _, d := range []*apd.Decimal{&t.Price, &t.Bid, &t.Ask, &t.Volume} {
			if err := tick.ParseDecimalBytes(d, []byte(f[2])); err != nil {
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

// ---- a local server speaking it (internal/wstest) ----

type serverConn = wstest.Conn

// shard is what a connection carries: the toy URL's query.
func shard(sc *serverConn) []string { return strings.Split(sc.URL.Query().Get("s"), ",") }

func symbols(c *wstest.Collector) []string {
	var out []string
	for _, t := range c.Ticks() {
		out = append(out, t.Symbol)
	}
	return out
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type harness struct {
	s      *wstest.Server
	out    *wstest.Collector
	gaps   *wstest.Gaps
	trades *wstest.Trades
	quotes *wstest.Quotes
	reg    *prometheus.Registry
	m      *ingest.Metrics
	clk    *clock.Fake
	f      *Feed
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

func start(t *testing.T, o Options, script func(sc *serverConn), setup ...func(s *wstest.Server)) *harness {
	t.Helper()
	h := &harness{clk: clock.NewFake(t0), out: &wstest.Collector{}, gaps: &wstest.Gaps{}, trades: &wstest.Trades{}, quotes: &wstest.Quotes{}}
	h.s = wstest.NewServer(t, h.clk, script)
	for _, f := range setup {
		f(h.s)
	}
	reg := prometheus.NewRegistry()
	h.reg = reg
	h.m, _ = ingest.NewMetrics(reg)
	if _, ok := o.Exchange.(toyFrames); ok {
		o.Exchange = toyFrames{toy{base: h.s.URL()}}
	} else {
		o.Exchange = toy{base: h.s.URL()}
	}
	o.Clock, o.Metrics, o.Queue = h.clk, reg, h.out
	o.Gaps, o.Trades, o.Quotes = h.gaps, h.trades, h.quotes
	var err error
	if h.f, err = New(o); err != nil {
		t.Fatal(err)
	}
	wstest.Run(t, h.f)
	return h
}

func (h *harness) reconnects(reason string) float64 {
	return testutil.ToFloat64(h.m.Reconnects.WithLabelValues("toy", reason))
}

func (h *harness) waitTicks(t *testing.T, n int) []string {
	t.Helper()
	h.out.WaitFor(t, n)
	return symbols(h.out)
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
		{"exchange that decodes nothing", func(o *Options) { o.Exchange = mute{} }, "decodes nothing"},
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
			o.Exchange, o.Queue = toy{base: "ws://x"}, &wstest.Collector{}
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
				testkit.Eventually(t, 5*time.Second, "subscriptions", func() bool { return len(sc.Sent()) == len(shard(sc)) })
				for _, s := range shard(sc) {
					sc.Send("tick " + s + " 1.50")
				}
				sc.WaitGone()
			})
			h.waitTicks(t, len(tc.streams))
			var shards []string
			for _, sc := range h.s.Conns() {
				shards = append(shards, strings.Join(shard(sc), ","))
				var want []string
				for _, s := range shard(sc) {
					want = append(want, "sub "+s)
				}
				if got := sc.Sent(); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("conn %d got %q, want %q", sc.N, got, want)
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
		sc.WaitGone()
	})
	<-ready
	testkit.Eventually(t, 5*time.Second, "first subscription", func() bool { return len(sc0.Sent()) == 1 })
	wstest.WaitTimers(t, h.clk, 2) // the watchdog and the pacer's wait for the second
	for want := 2; want <= 3; want++ {
		h.clk.Advance(time.Second)
		testkit.Eventually(t, 5*time.Second, fmt.Sprintf("subscription %d", want), func() bool { return len(sc0.Sent()) == want })
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
				sc.Send("tick A 1")
				sc.WaitGone()
			}, func(s *wstest.Server) {
				var h http.Header
				if tc.header != "" {
					h = http.Header{"Retry-After": {tc.header}}
				}
				s.Reject(h, tc.status)
			})
			wstest.AdvanceUntil(t, h.clk, step, "a connection after the refusal", func() bool { return len(symbols(h.out)) == 1 })
			at := h.s.Attempts()
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
		sc.Send("tick A 1")
		if sc.N > 0 {
			sc.Send("tick A 2")
		}
		sc.WaitGone() // then silence, the connection left open
	})
	h.waitTicks(t, 1)
	wstest.WaitTimers(t, h.clk, 1) // the watchdog (no lifetime limit)
	h.clk.Advance(29 * time.Second)
	if len(h.s.Conns()) != 1 || h.reconnects("stale") != 0 {
		t.Fatal("replaced before StaleAfter passed")
	}
	h.clk.Advance(time.Second)
	wstest.AdvanceUntil(t, h.clk, 50*time.Millisecond, "the replacement's ticks", func() bool { return len(symbols(h.out)) == 3 })
	if r := h.reconnects("stale"); r != 1 {
		t.Errorf("reconnects_total{stale} = %v, want 1", r)
	}
	if conns := h.s.Conns(); conns[0].Gone.Err() == nil {
		t.Error("the stale connection was not closed")
	}
}

func TestAppLevelPings(t *testing.T) {
	o := options()
	o.StaleAfter = time.Hour
	o.KeepAlive = KeepAlive{Ping: []byte(`{"op":"ping"}`), PingEvery: 20 * time.Second}
	ready := make(chan *serverConn, 1)
	h := start(t, o, func(sc *serverConn) {
		ready <- sc
		sc.WaitGone()
	})
	sc := <-ready
	testkit.Eventually(t, 5*time.Second, "subscription", func() bool { return len(sc.Sent()) == 1 })
	for n := 1; n <= 3; n++ {
		wstest.WaitTimers(t, h.clk, 2) // the watchdog and the ping
		h.clk.Advance(20 * time.Second)
		testkit.Eventually(t, 5*time.Second, fmt.Sprintf("ping %d", n), func() bool { return len(sc.Sent()) == 1+n })
		sc.Send("pong")
	}
	if got := sc.Sent(); got[0] != "sub a" || got[3] != `{"op":"ping"}` {
		t.Errorf("client sent %q", got)
	}
	if testutil.CollectAndCount(h.m.Reconnects) != 0 || testutil.CollectAndCount(h.m.Malformed) != 0 {
		t.Error("pings or pongs were counted as trouble")
	}
}

func TestCountsSkippedFramesAndServerEvents(t *testing.T) {
	h := start(t, options(), func(sc *serverConn) {
		sc.Send("tick A 1", "hello", "junk", "tick A x", "err slow down", "pong", "tick A 2")
		if err := sc.WS.Write(sc.Context(), websocket.MessageBinary, []byte{1}); err != nil {
			t.Errorf("binary write: %v", err)
		}
		sc.Send("tick A 3")
		sc.WaitGone()
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
	s := wstest.NewServer(t, o.Clock, func(sc *serverConn) {
		sc.Send("tick A 1")
		sc.WaitGone()
	})
	o.Exchange = toy{base: s.URL()}
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

// mute has a URL and subscriptions but no decoder.
type mute struct{}

func (mute) URL([]string) string         { return "ws://x" }
func (mute) Subscribe([]string) [][]byte { return nil }

type refusing struct{}

func (refusing) Enqueue(context.Context, *tick.Tick) error { return ingest.ErrClosed }

// A frame over the read limit is a malformed frame (too_large), skipped:
// the connection stays and what follows is read.
func TestOversizedFrameIsSkippedNotAReconnect(t *testing.T) {
	o := options()
	o.ReadLimit = 1 << 10
	for _, size := range []int{1 << 10, 1<<10 + 1, 70 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			h := start(t, o, func(sc *serverConn) {
				// A tick padded to size: still a valid toy frame at the limit.
				sc.Send("tick A 1"+strings.Repeat(" ", size-len("tick A 1")), "tick A 2")
				sc.WaitGone()
			})
			want := 1
			if int64(size) <= o.ReadLimit {
				want = 2
			}
			got := h.out.WaitFor(t, want)
			if last := got[len(got)-1].Price.String(); last != "2" {
				t.Errorf("last tick %s, want 2", last)
			}
			tooLarge := testutil.ToFloat64(h.m.Malformed.WithLabelValues("toy", "too_large"))
			if wantTL := float64(2 - want); tooLarge != wantTL {
				t.Errorf("malformed_frames_total{too_large} = %v, want %v", tooLarge, wantTL)
			}
			if n := testutil.CollectAndCount(h.m.Reconnects); n != 0 || len(h.s.Conns()) != 1 {
				t.Errorf("%d reconnect series, %d connections: the frame cost the connection", n, len(h.s.Conns()))
			}
		})
	}
}
