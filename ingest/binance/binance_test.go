package binance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
)

// ---- a local Binance: combined streams over WebSocket, scripted per connection ----

type fakeBinance struct {
	t      *testing.T
	srv    *httptest.Server
	ctx    context.Context // ends at test cleanup, before the server closes
	clk    clock.Clock
	script func(sc *serverConn)

	mu       sync.Mutex
	conns    []*serverConn
	attempts []time.Time // fake-clock time of every handshake attempt
	reject   []int       // HTTP status for the next handshakes, consumed in order
	header   http.Header // sent with a rejection
}

// serverConn is one accepted connection.
type serverConn struct {
	n       int
	path    string
	streams []string
	ws      *websocket.Conn
	// gone ends when the client disconnects (or the test ends).
	gone  context.Context
	pongs atomic.Int32
	fb    *fakeBinance
}

func newFakeBinance(t *testing.T, clk clock.Clock, script func(sc *serverConn)) *fakeBinance {
	fb := &fakeBinance{t: t, clk: clk, script: script}
	ctx, cancel := context.WithCancel(context.Background())
	fb.ctx = ctx
	fb.srv = httptest.NewServer(http.HandlerFunc(fb.handle))
	t.Cleanup(fb.srv.Close)
	t.Cleanup(cancel) // runs first: unblocks scripts waiting on gone
	return fb
}

func (fb *fakeBinance) url() string { return "ws" + strings.TrimPrefix(fb.srv.URL, "http") }

func (fb *fakeBinance) handle(w http.ResponseWriter, r *http.Request) {
	fb.mu.Lock()
	fb.attempts = append(fb.attempts, fb.clk.Now())
	if len(fb.reject) > 0 {
		status := fb.reject[0]
		fb.reject = fb.reject[1:]
		fb.mu.Unlock()
		for k, v := range fb.header {
			w.Header()[k] = v
		}
		http.Error(w, "go away", status)
		return
	}
	sc := &serverConn{n: len(fb.conns), path: r.URL.Path, streams: strings.Split(r.URL.Query().Get("streams"), "/"), fb: fb}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OnPongReceived: func(context.Context, []byte) { sc.pongs.Add(1) },
	})
	if err != nil {
		fb.mu.Unlock()
		fb.t.Errorf("accept: %v", err)
		return
	}
	sc.ws = ws
	fb.conns = append(fb.conns, sc)
	fb.mu.Unlock()
	defer ws.CloseNow()
	// CloseRead keeps reading (answering control frames) and ends gone
	// when the client leaves. The client must never send a data message:
	// CloseRead would fail the connection and the test would see a
	// reconnect it did not expect.
	gone := ws.CloseRead(fb.ctx)
	sc.gone = gone
	fb.script(sc)
}

func (fb *fakeBinance) connections() []*serverConn {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return slices.Clone(fb.conns)
}

func (fb *fakeBinance) attemptTimes() []time.Time {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return slices.Clone(fb.attempts)
}

// send writes text frames; it fails the test only if the client is still
// there to read them.
func (sc *serverConn) send(frames ...string) {
	for _, f := range frames {
		if err := sc.ws.Write(sc.fb.ctx, websocket.MessageText, []byte(f)); err != nil {
			if sc.gone.Err() == nil {
				sc.fb.t.Errorf("conn %d: write: %v", sc.n, err)
			}
			return
		}
	}
}

// waitGone blocks until the client closes the connection.
func (sc *serverConn) waitGone() { <-sc.gone.Done() }

// ---- frames ----

// ticker builds a 24hrTicker frame in Binance's shape (the documented
// sample, with symbol, event time and prices varied by seq) and the tick it
// must decode to.
func ticker(symbol string, seq int, receivedAt int64) (string, tick.Tick) {
	var data map[string]json.RawMessage
	var outer struct{ Data json.RawMessage }
	_ = json.Unmarshal([]byte(sampleTicker), &outer)
	_ = json.Unmarshal(outer.Data, &data)
	price := fmt.Sprintf("%d.%03d00", 100+seq, seq%1000) // trailing zeros must survive
	fields := map[string]string{
		"s": symbol, "c": price, "b": fmt.Sprintf("%d.00000000", 99+seq), "a": fmt.Sprintf("%d.10", 101+seq),
		"o": "97.5", "h": fmt.Sprintf("%d.9", 102+seq), "l": "96", "v": fmt.Sprintf("%d.125", 10000+seq), "q": "18.00",
	}
	for k, v := range fields {
		data[k] = json.RawMessage(`"` + v + `"`)
	}
	ts := int64(1672515782136 + seq)
	data["E"] = json.RawMessage(fmt.Sprint(ts))
	d, _ := json.Marshal(data)
	frame, _ := json.Marshal(map[string]any{"stream": strings.ToLower(symbol) + "@ticker", "data": json.RawMessage(d)})
	return string(frame), tick.Tick{
		Exchange: "binance", Symbol: symbol, Timestamp: ts,
		Price: tick.MustDecimal(price), Volume: tick.MustDecimal(fields["v"]),
		Bid: tick.MustDecimal(fields["b"]), Ask: tick.MustDecimal(fields["a"]),
		Open24h: tick.MustDecimal(fields["o"]), High24h: tick.MustDecimal(fields["h"]),
		Low24h: tick.MustDecimal(fields["l"]), QuoteVolume: tick.MustDecimal(fields["q"]),
		ReceivedAt: receivedAt,
	}
}

// tickers builds n frames cycling over symbols, starting at seq from.
func tickers(symbols []string, from, n int, receivedAt int64) ([]string, []tick.Tick) {
	var frames []string
	var want []tick.Tick
	for i := from; i < from+n; i++ {
		f, w := ticker(symbols[i%len(symbols)], i, receivedAt)
		frames = append(frames, f)
		want = append(want, w)
	}
	return frames, want
}

// ---- the receiving end ----

// collector is an Enqueuer that keeps what it gets.
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

func (c *collector) got() []tick.Tick {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ticks)
}

func (c *collector) waitFor(t *testing.T, n int) []tick.Tick {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("%d ticks", n), func() bool { return len(c.got()) >= n })
	return c.got()
}

func waitTimers(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	if !clk.WaitTimersFor(n, 5*time.Second) {
		t.Fatalf("timed out waiting for %d pending timers (have %d)", n, clk.Pending())
	}
}

// advanceUntil moves the fake clock by step whenever a timer waits, until
// cond holds: for waits whose exact length is random (jittered backoff).
func advanceUntil(t *testing.T, clk *clock.Fake, step time.Duration, what string, cond func() bool) {
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

// sameTicks compares in order, on the wire form (exact decimals).
func sameTicks(t *testing.T, got, want []tick.Tick) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d ticks, want %d", len(got), len(want))
	}
	for i := range want {
		if g, w := tickJSON(&got[i]), tickJSON(&want[i]); g != w {
			t.Fatalf("tick %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type harness struct {
	fb  *fakeBinance
	out *collector
	m   *ingest.Metrics
	clk *clock.Fake
	f   *Feed
}

// start runs a feed against a fresh fake Binance. With a nil clock the
// real clock runs and backoff is made short.
func start(t *testing.T, clk *clock.Fake, o Options, script func(sc *serverConn), setup ...func(fb *fakeBinance)) *harness {
	t.Helper()
	var c clock.Clock = clock.Real
	if clk != nil {
		c = clk
	} else if o.BackoffMin == 0 {
		o.BackoffMin, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	h := &harness{fb: newFakeBinance(t, c, script), out: &collector{}, clk: clk}
	for _, f := range setup {
		f(h.fb)
	}
	reg := prometheus.NewRegistry()
	h.m, _ = ingest.NewMetrics(reg)
	o.URL = h.fb.url()
	o.Clock, o.Metrics = clk, reg
	if clk == nil {
		o.Clock = nil
	}
	if o.Queue == nil {
		o.Queue = h.out
	}
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
	return testutil.ToFloat64(h.m.Reconnects.WithLabelValues(Exchange, reason))
}

func (h *harness) totalReconnects() int { return testutil.CollectAndCount(h.m.Reconnects) }

// ---- tests ----

func TestNormalFlowDecodesEveryTickInOrder(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BNBBTC", "BTCUSDT", "ETHUSDT"}
	recv := t0.UnixMicro()
	frames, want := tickers(symbols, 0, 30, recv)
	// The documented sample itself comes first, verbatim.
	var first tick.Tick
	if _, _, _, err := testDecoder("BNBBTC").decode([]byte(sampleTicker), &first); err != nil {
		t.Fatal(err)
	}
	first.ReceivedAt = recv
	frames, want = append([]string{sampleTicker}, frames...), append([]tick.Tick{first}, want...)

	h := start(t, clk, Options{Symbols: []string{"bnbbtc", "BTCUSDT", "EthUsdt"}}, func(sc *serverConn) {
		sc.send(frames...)
		sc.waitGone()
	})
	sameTicks(t, h.out.waitFor(t, len(want)), want)

	conns := h.fb.connections()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	if conns[0].path != "/stream" || strings.Join(conns[0].streams, "/") != "bnbbtc@ticker/btcusdt@ticker/ethusdt@ticker" {
		t.Errorf("connected to %s?streams=%s", conns[0].path, strings.Join(conns[0].streams, "/"))
	}
	for sym, n := range map[string]float64{"BNBBTC": 11, "BTCUSDT": 10, "ETHUSDT": 10} {
		if got := testutil.ToFloat64(h.m.Received.WithLabelValues(Exchange, sym)); got != n {
			t.Errorf("ticks_received_total{%s} = %v, want %v", sym, got, n)
		}
	}
	if got := testutil.ToFloat64(h.m.Connections.WithLabelValues(Exchange)); got != 1 {
		t.Errorf("connections gauge = %v, want 1", got)
	}
	if n := h.totalReconnects(); n != 0 {
		t.Errorf("%d reconnect series, want none", n)
	}
	if err := h.f.Ready(context.Background()); err != nil {
		t.Errorf("Ready = %v while connected", err)
	}
}

func TestReconnectsWhenServerDrops(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drop   func(ws *websocket.Conn)
		reason string
	}{
		{"close frame", func(ws *websocket.Conn) { ws.Close(websocket.StatusGoingAway, "bye") }, "closed_by_server"},
		{"TCP reset", func(ws *websocket.Conn) { ws.CloseNow() }, "read_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			symbols := []string{"BTCUSDT", "ETHUSDT"}
			frames, want := tickers(symbols, 0, 12, 0)
			h := start(t, nil, Options{Symbols: symbols}, func(sc *serverConn) {
				switch sc.n {
				case 0:
					sc.send(frames[:5]...)
					tc.drop(sc.ws)
				case 1:
					sc.send(frames[5:]...)
					sc.waitGone()
				default:
					t.Errorf("unexpected connection %d", sc.n)
				}
			})
			got := h.out.waitFor(t, len(want))
			for i := range got {
				got[i].ReceivedAt = 0 // real clock here
			}
			sameTicks(t, got, want)
			if r := h.reconnects(tc.reason); r != 1 {
				t.Errorf("reconnects_total{%s} = %v, want 1", tc.reason, r)
			}
		})
	}
}

func TestSkipsMalformedFramesAndCountsThem(t *testing.T) {
	clk := clock.NewFake(t0)
	bad := badFrames(t)
	symbols := []string{"BNBBTC", "BTCUSDT"}
	goodFrames, want := tickers(symbols, 0, len(bad)+1, t0.UnixMicro())
	wantBad := map[string]float64{reasonBinary: 1}
	h := start(t, clk, Options{Symbols: symbols}, func(sc *serverConn) {
		// Each bad frame sits between two good ones.
		for i, b := range bad {
			sc.send(goodFrames[i], b.frame)
		}
		sc.send(`{"code": 0, "msg": "Unknown property", "id": 1}`)
		if err := sc.ws.Write(sc.fb.ctx, websocket.MessageBinary, []byte(sampleTicker)); err != nil {
			t.Errorf("write binary: %v", err)
		}
		sc.send(goodFrames[len(bad)])
		sc.waitGone()
	})
	for _, b := range bad {
		wantBad[b.reason]++
	}
	sameTicks(t, h.out.waitFor(t, len(want)), want)
	for reason, n := range wantBad {
		if got := testutil.ToFloat64(h.m.Malformed.WithLabelValues(Exchange, reason)); got != n {
			t.Errorf("malformed_frames_total{%s} = %v, want %v", reason, got, n)
		}
	}
	if got := testutil.ToFloat64(h.m.ServerEvents.WithLabelValues(Exchange, "error")); got != 1 {
		t.Errorf("server_events_total{error} = %v, want 1", got)
	}
	if n := h.totalReconnects(); n != 0 || len(h.fb.connections()) != 1 {
		t.Errorf("bad frames caused a reconnect (%d series, %d connections)", n, len(h.fb.connections()))
	}
}

func TestStaleConnectionIsReplaced(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, 0)
	h := start(t, clk, Options{Symbols: symbols, StaleAfter: 30 * time.Second, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second},
		func(sc *serverConn) {
			switch sc.n {
			case 0:
				sc.send(frames[:2]...)
				sc.waitGone() // then silence: no data, the connection stays open
			default:
				sc.send(frames[2:]...)
				sc.waitGone()
			}
		})
	h.out.waitFor(t, 2)
	waitTimers(t, clk, 2) // the watchdog and the lifetime timer
	clk.Advance(29 * time.Second)
	if len(h.fb.connections()) != 1 || h.reconnects("stale") != 0 {
		t.Fatal("replaced before StaleAfter passed")
	}
	clk.Advance(time.Second)
	advanceUntil(t, clk, 50*time.Millisecond, "the replacement connection's ticks", func() bool { return len(h.out.got()) == 4 })
	got := h.out.got()
	for i := range got {
		got[i].ReceivedAt = 0
	}
	sameTicks(t, got, want)
	if r := h.reconnects("stale"); r != 1 {
		t.Errorf("reconnects_total{stale} = %v, want 1", r)
	}
	if conns := h.fb.connections(); conns[0].gone.Err() == nil {
		t.Error("the stale connection was not closed")
	}
}

func TestMaxLifetimeReconnect(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, 0)
	h := start(t, clk, Options{Symbols: symbols, MaxLifetime: time.Hour, StaleAfter: 2 * time.Hour}, func(sc *serverConn) {
		if sc.n == 0 {
			sc.send(frames[:2]...)
		} else {
			sc.send(frames[2:]...)
		}
		sc.waitGone()
	})
	h.out.waitFor(t, 2)
	waitTimers(t, clk, 2)
	clk.Advance(time.Hour - time.Millisecond)
	if len(h.fb.connections()) != 1 {
		t.Fatal("reconnected before MaxLifetime")
	}
	// A planned reconnect does not back off: no further clock movement
	// is needed for the new connection.
	clk.Advance(time.Millisecond)
	got := h.out.waitFor(t, 4)
	for i := range got {
		got[i].ReceivedAt = 0
	}
	sameTicks(t, got, want)
	if r := h.reconnects("max_lifetime"); r != 1 {
		t.Errorf("reconnects_total{max_lifetime} = %v, want 1", r)
	}
	if conns := h.fb.connections(); len(conns) != 2 || conns[0].gone.Err() == nil {
		t.Errorf("want the old connection closed and one new one; have %d", len(conns))
	}
}

func TestServerShutdownEventReconnectsAtOnce(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, t0.UnixMicro())
	h := start(t, clk, Options{Symbols: symbols}, func(sc *serverConn) {
		if sc.n == 0 {
			sc.send(frames[0], frames[1], `{"e":"serverShutdown","E":1770123456789}`)
		} else {
			sc.send(frames[2:]...)
		}
		sc.waitGone()
	})
	sameTicks(t, h.out.waitFor(t, 4), want)
	if r := h.reconnects("server_shutdown"); r != 1 {
		t.Errorf("reconnects_total{server_shutdown} = %v, want 1", r)
	}
	if got := testutil.ToFloat64(h.m.ServerEvents.WithLabelValues(Exchange, "server_shutdown")); got != 1 {
		t.Errorf("server_events_total{server_shutdown} = %v, want 1", got)
	}
}

func TestShardsStreamsAcrossConnections(t *testing.T) {
	for _, tc := range []struct {
		symbols []string
		perConn int
		want    []string // stream lists, one per connection
	}{
		{[]string{"AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"}, 2,
			[]string{"aaausdt@ticker/bbbusdt@ticker", "cccusdt@ticker/dddusdt@ticker", "eeeusdt@ticker"}},
		{[]string{"AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"}, 2,
			[]string{"aaausdt@ticker/bbbusdt@ticker", "cccusdt@ticker/dddusdt@ticker"}},
		{[]string{"AAAUSDT", "BBBUSDT", "CCCUSDT"}, 1024,
			[]string{"aaausdt@ticker/bbbusdt@ticker/cccusdt@ticker"}},
		{[]string{"AAAUSDT", "BBBUSDT"}, 1, []string{"aaausdt@ticker", "bbbusdt@ticker"}},
	} {
		t.Run(fmt.Sprintf("%d_by_%d", len(tc.symbols), tc.perConn), func(t *testing.T) {
			clk := clock.NewFake(t0)
			const perStream = 3
			h := start(t, clk, Options{Symbols: tc.symbols, StreamsPerConn: tc.perConn}, func(sc *serverConn) {
				for i := range perStream {
					for _, s := range sc.streams {
						f, _ := ticker(strings.ToUpper(strings.TrimSuffix(s, "@ticker")), i, 0)
						sc.send(f)
					}
				}
				sc.waitGone()
			})
			got := h.out.waitFor(t, perStream*len(tc.symbols))
			var lists []string
			for _, sc := range h.fb.connections() {
				lists = append(lists, strings.Join(sc.streams, "/"))
			}
			sort.Strings(lists)
			if fmt.Sprint(lists) != fmt.Sprint(tc.want) {
				t.Errorf("connections carry %v, want %v", lists, tc.want)
			}
			if urls := h.f.URLs(); len(urls) != len(tc.want) {
				t.Errorf("URLs() = %v", urls)
			}
			// Each symbol's ticks arrive in the order its connection sent them.
			last := map[string]int64{}
			for _, tk := range got {
				if tk.Timestamp <= last[tk.Symbol] {
					t.Errorf("%s out of order: %d after %d", tk.Symbol, tk.Timestamp, last[tk.Symbol])
				}
				last[tk.Symbol] = tk.Timestamp
			}
			if len(last) != len(tc.symbols) {
				t.Errorf("ticks for %d symbols, want %d", len(last), len(tc.symbols))
			}
		})
	}
}

func TestAnswersPingsWithinTheMessageRateLimit(t *testing.T) {
	clk := clock.NewFake(t0)
	ready := make(chan *serverConn, 1)
	h := start(t, clk, Options{Symbols: []string{"BTCUSDT"}}, func(sc *serverConn) {
		ready <- sc
		sc.waitGone()
	})
	sc := <-ready
	ping := func() error {
		ctx, cancel := context.WithTimeout(sc.fb.ctx, 5*time.Second)
		defer cancel()
		return sc.ws.Ping(ctx) // returns once a pong echoing its payload arrives
	}
	if err := ping(); err != nil {
		t.Fatalf("first ping: %v", err)
	}
	// A flood within one pong interval gets no pongs: answering would break
	// Binance's 5 messages per second.
	const flood = 5
	for range flood {
		go func() { _ = sc.ws.Ping(sc.fb.ctx) }()
	}
	dropped := func() float64 { return testutil.ToFloat64(h.m.PingsDropped.WithLabelValues(Exchange)) }
	testkit.Eventually(t, 5*time.Second, "flood pings dropped", func() bool { return dropped() == flood })
	if n := sc.pongs.Load(); n != 1 {
		t.Errorf("server got %d pongs, want 1", n)
	}
	clk.Advance(pongEvery)
	if err := ping(); err != nil {
		t.Fatalf("ping after the interval: %v", err)
	}
	if n := h.totalReconnects(); n != 0 {
		t.Errorf("pings caused a reconnect")
	}
}

func TestDialFailuresBackOffExponentiallyWithJitter(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frame, want := ticker("BTCUSDT", 1, 0)
	h := start(t, clk, Options{Symbols: symbols, BackoffMin: time.Second, BackoffMax: 4 * time.Second, ConnectBurst: 100},
		func(sc *serverConn) {
			sc.send(frame)
			sc.waitGone()
		},
		// The server refuses five handshakes before it accepts: four 503s,
		// then a rate-limit answer whose Retry-After must be honoured.
		func(fb *fakeBinance) {
			fb.reject = []int{503, 503, 503, 503, http.StatusTooManyRequests}
			fb.header = http.Header{"Retry-After": {"7"}}
		})
	const step = 50 * time.Millisecond
	advanceUntil(t, clk, step, "a connection after the refusals", func() bool { return len(h.out.got()) == 1 })
	got := h.out.got()
	got[0].ReceivedAt = 0
	sameTicks(t, got, []tick.Tick{want})

	at := h.fb.attemptTimes()
	if len(at) != 6 {
		t.Fatalf("%d attempts, want 6", len(at))
	}
	// Delay before attempt i+1: equal jitter over min·2^i capped at max,
	// measured in the clock's steps.
	bounds := []struct{ lo, hi time.Duration }{
		{500 * time.Millisecond, time.Second},
		{time.Second, 2 * time.Second},
		{2 * time.Second, 4 * time.Second},
		{2 * time.Second, 4 * time.Second},
		{7 * time.Second, 7 * time.Second},
	}
	for i, b := range bounds {
		d := at[i+1].Sub(at[i])
		if d < b.lo || d > b.hi+step {
			t.Errorf("delay before attempt %d = %s, want within %s..%s", i+1, d, b.lo, b.hi)
		}
	}
	if got := testutil.ToFloat64(h.m.DialErrors.WithLabelValues(Exchange)); got != 5 {
		t.Errorf("dial_errors_total = %v, want 5", got)
	}
}

func TestBackpressureBlocksTheReadLoopWithoutLosingOrReconnecting(t *testing.T) {
	clk := clock.NewFake(t0)
	reg := prometheus.NewRegistry()
	m, _ := ingest.NewMetrics(reg)
	q, err := ingest.NewQueue(2, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	pub := &gatedPublisher{gate: make(chan struct{})}
	pump, err := ingest.NewPump(q, pub, ingest.PumpOptions{Workers: 1, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	symbols := []string{"BTCUSDT", "ETHUSDT"}
	frames, want := tickers(symbols, 0, 60, t0.UnixMicro())
	h := start(t, clk, Options{Symbols: symbols, StaleAfter: 10 * time.Second, Queue: q}, func(sc *serverConn) {
		sc.send(frames...)
		sc.waitGone()
	})
	ctx, cancel := context.WithCancel(context.Background())
	pumped := make(chan error, 1)
	go func() { pumped <- pump.Run(ctx) }()

	testkit.Eventually(t, 5*time.Second, "the read loop blocked on the full queue", func() bool { return testutil.ToFloat64(m.QueueWaiting) == 1 })
	// Blocked far longer than StaleAfter: that is the producer's stall, not
	// the server's silence, so the connection must stay.
	waitTimers(t, clk, 2)
	clk.Advance(10 * time.Second)
	waitTimers(t, clk, 2) // the watchdog looked and re-armed
	clk.Advance(10 * time.Second)
	waitTimers(t, clk, 2)
	if received := testutil.ToFloat64(m.Received.WithLabelValues(Exchange, "BTCUSDT")); received >= 30 {
		t.Fatalf("all ticks were received despite the stalled producer")
	}

	close(pub.gate)
	testkit.Eventually(t, 5*time.Second, "every tick produced", func() bool { return len(pub.got()) == len(want) })
	cancel()
	if err := <-pumped; err != nil {
		t.Fatalf("pump: %v", err)
	}
	got := pub.got()
	for i := range got {
		got[i].ReceivedAt = 0 // the fake clock moved while the loop was blocked
		want[i].ReceivedAt = 0
	}
	sameTicks(t, got, want) // one worker: global order is kept too
	if n := h.totalReconnects(); n != 0 || len(h.fb.connections()) != 1 {
		t.Errorf("backpressure caused a reconnect")
	}
	if got := testutil.ToFloat64(m.QueueBlocked.WithLabelValues(Exchange)); got <= 0 {
		t.Errorf("queue_blocked_seconds_total = %v, want > 0", got)
	}
}

type gatedPublisher struct {
	gate chan struct{}
	mu   sync.Mutex
	ts   []tick.Tick
}

func (p *gatedPublisher) Produce(ctx context.Context, t *tick.Tick) error {
	select {
	case <-p.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	p.ts = append(p.ts, *t)
	p.mu.Unlock()
	return nil
}

func (p *gatedPublisher) got() []tick.Tick {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ts)
}

func TestReadyReportsDisconnectedShards(t *testing.T) {
	clk := clock.NewFake(t0)
	h := start(t, clk, Options{Symbols: []string{"BTCUSDT"}, BackoffMin: time.Hour, BackoffMax: time.Hour},
		func(sc *serverConn) { t.Error("connected despite the refusal") },
		func(fb *fakeBinance) { fb.reject = []int{503} })
	testkit.Eventually(t, 5*time.Second, "a dial error", func() bool { return testutil.ToFloat64(h.m.DialErrors.WithLabelValues(Exchange)) == 1 })
	err := h.f.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection 1/1") || !strings.Contains(err.Error(), "503") {
		t.Errorf("Ready = %v, want the failed connection and its cause", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	q := &collector{}
	ok := Options{Symbols: []string{"BTCUSDT"}, Queue: q}
	for _, tc := range []struct {
		name   string
		mutate func(o *Options)
		err    string // "" = valid
	}{
		{"defaults", func(o *Options) {}, ""},
		{"http url", func(o *Options) { o.URL = "https://stream.binance.com" }, "scheme must be ws or wss"},
		{"url with query", func(o *Options) { o.URL = "wss://x/stream?streams=a" }, "base URL"},
		{"no symbols", func(o *Options) { o.Symbols = nil }, "symbols: none"},
		{"symbol with slash", func(o *Options) { o.Symbols = []string{"BTC/USDT"} }, "not a Binance symbol"},
		{"empty symbol", func(o *Options) { o.Symbols = []string{""} }, "not a Binance symbol"},
		{"duplicate symbol", func(o *Options) { o.Symbols = []string{"btcusdt", "BTCUSDT"} }, "listed twice"},
		{"too many streams per conn", func(o *Options) { o.StreamsPerConn = 1025 }, "outside 1..1024"},
		{"negative streams per conn", func(o *Options) { o.StreamsPerConn = -1 }, "outside 1..1024"},
		{"lifetime at Binance's cut-off", func(o *Options) { o.MaxLifetime = 24 * time.Hour }, "below Binance's 24h"},
		{"negative stale", func(o *Options) { o.StaleAfter = -time.Second }, "stale after"},
		{"backoff inverted", func(o *Options) { o.BackoffMin, o.BackoffMax = 2*time.Second, time.Second }, "backoff"},
		{"no queue", func(o *Options) { o.Queue = nil }, "queue: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.mutate(&o)
			_, err := New(o)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("New = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}
