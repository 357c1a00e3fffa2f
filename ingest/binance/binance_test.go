package binance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/wstest"
	"github.com/tickflow/tickflow/tick"
)

// ---- a local Binance: combined streams over WebSocket (internal/wstest), scripted per connection ----

type serverConn = wstest.Conn

// streamsOf is what a connection subscribed to: the combined-stream query.
func streamsOf(sc *serverConn) []string { return strings.Split(sc.URL.Query().Get("streams"), "/") }

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
	fb  *wstest.Server
	out *wstest.Collector
	m   *ingest.Metrics
	clk *clock.Fake
	f   *Feed
}

// start runs a feed against a fresh fake Binance. With a nil clock the
// real clock runs and backoff is made short.
func start(t *testing.T, clk *clock.Fake, o Options, script func(sc *serverConn), setup ...func(fb *wstest.Server)) *harness {
	t.Helper()
	var c clock.Clock = clock.Real
	if clk != nil {
		c = clk
	} else if o.BackoffMin == 0 {
		o.BackoffMin, o.BackoffMax = time.Millisecond, 5*time.Millisecond
	}
	h := &harness{fb: wstest.NewServer(t, c, script), out: &wstest.Collector{}, clk: clk}
	for _, f := range setup {
		f(h.fb)
	}
	reg := prometheus.NewRegistry()
	h.m, _ = ingest.NewMetrics(reg)
	o.URL = h.fb.URL()
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
	wstest.Run(t, h.f)
	t.Cleanup(func() {
		// Binance subscribes through the URL: the only frames a client
		// sends are pongs, never a data message.
		for _, sc := range h.fb.Conns() {
			if sent := sc.Sent(); len(sent) > 0 {
				t.Errorf("conn %d: the client sent %q", sc.N, sent)
			}
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
		sc.Send(frames...)
		sc.WaitGone()
	})
	sameTicks(t, h.out.WaitFor(t, len(want)), want)

	conns := h.fb.Conns()
	if len(conns) != 1 {
		t.Fatalf("%d connections, want 1", len(conns))
	}
	if conns[0].URL.Path != "/stream" || strings.Join(streamsOf(conns[0]), "/") != "bnbbtc@ticker/btcusdt@ticker/ethusdt@ticker" {
		t.Errorf("connected to %s?streams=%s", conns[0].URL.Path, strings.Join(streamsOf(conns[0]), "/"))
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
				switch sc.N {
				case 0:
					sc.Send(frames[:5]...)
					tc.drop(sc.WS)
				case 1:
					sc.Send(frames[5:]...)
					sc.WaitGone()
				default:
					t.Errorf("unexpected connection %d", sc.N)
				}
			})
			got := h.out.WaitFor(t, len(want))
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
			sc.Send(goodFrames[i], b.frame)
		}
		sc.Send(`{"code": 0, "msg": "Unknown property", "id": 1}`)
		if err := sc.WS.Write(sc.Context(), websocket.MessageBinary, []byte(sampleTicker)); err != nil {
			t.Errorf("write binary: %v", err)
		}
		sc.Send(goodFrames[len(bad)])
		sc.WaitGone()
	})
	for _, b := range bad {
		wantBad[b.reason]++
	}
	sameTicks(t, h.out.WaitFor(t, len(want)), want)
	for reason, n := range wantBad {
		if got := testutil.ToFloat64(h.m.Malformed.WithLabelValues(Exchange, reason)); got != n {
			t.Errorf("malformed_frames_total{%s} = %v, want %v", reason, got, n)
		}
	}
	if got := testutil.ToFloat64(h.m.ServerEvents.WithLabelValues(Exchange, "error")); got != 1 {
		t.Errorf("server_events_total{error} = %v, want 1", got)
	}
	if n := h.totalReconnects(); n != 0 || len(h.fb.Conns()) != 1 {
		t.Errorf("bad frames caused a reconnect (%d series, %d connections)", n, len(h.fb.Conns()))
	}
}

func TestStaleConnectionIsReplaced(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, 0)
	h := start(t, clk, Options{Symbols: symbols, StaleAfter: 30 * time.Second, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second},
		func(sc *serverConn) {
			switch sc.N {
			case 0:
				sc.Send(frames[:2]...)
				sc.WaitGone() // then silence: no data, the connection stays open
			default:
				sc.Send(frames[2:]...)
				sc.WaitGone()
			}
		})
	h.out.WaitFor(t, 2)
	wstest.WaitTimers(t, clk, 2) // the watchdog and the lifetime timer
	clk.Advance(29 * time.Second)
	if len(h.fb.Conns()) != 1 || h.reconnects("stale") != 0 {
		t.Fatal("replaced before StaleAfter passed")
	}
	clk.Advance(time.Second)
	wstest.AdvanceUntil(t, clk, 50*time.Millisecond, "the replacement connection's ticks", func() bool { return len(h.out.Ticks()) == 4 })
	got := h.out.Ticks()
	for i := range got {
		got[i].ReceivedAt = 0
	}
	sameTicks(t, got, want)
	if r := h.reconnects("stale"); r != 1 {
		t.Errorf("reconnects_total{stale} = %v, want 1", r)
	}
	if conns := h.fb.Conns(); conns[0].Gone.Err() == nil {
		t.Error("the stale connection was not closed")
	}
}

func TestMaxLifetimeReconnect(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, 0)
	h := start(t, clk, Options{Symbols: symbols, MaxLifetime: time.Hour, StaleAfter: 2 * time.Hour}, func(sc *serverConn) {
		if sc.N == 0 {
			sc.Send(frames[:2]...)
		} else {
			sc.Send(frames[2:]...)
		}
		sc.WaitGone()
	})
	h.out.WaitFor(t, 2)
	wstest.WaitTimers(t, clk, 2)
	clk.Advance(time.Hour - time.Millisecond)
	if len(h.fb.Conns()) != 1 {
		t.Fatal("reconnected before MaxLifetime")
	}
	// A planned reconnect does not back off: no further clock movement
	// is needed for the new connection.
	clk.Advance(time.Millisecond)
	got := h.out.WaitFor(t, 4)
	for i := range got {
		got[i].ReceivedAt = 0
	}
	sameTicks(t, got, want)
	// Make-before-break: the old connection closes once the new one has
	// delivered the pair.
	conns := h.fb.Conns()
	testkit.Eventually(t, 5*time.Second, "the old connection closed", func() bool { return conns[0].Gone.Err() != nil })
	testkit.Eventually(t, 5*time.Second, "reconnects_total{max_lifetime}", func() bool { return h.reconnects("max_lifetime") == 1 })
	if len(h.fb.Conns()) != 2 {
		t.Errorf("want one new connection; have %d", len(h.fb.Conns()))
	}
}

func TestServerShutdownEventReconnectsAtOnce(t *testing.T) {
	clk := clock.NewFake(t0)
	symbols := []string{"BTCUSDT"}
	frames, want := tickers(symbols, 0, 4, t0.UnixMicro())
	h := start(t, clk, Options{Symbols: symbols}, func(sc *serverConn) {
		if sc.N == 0 {
			sc.Send(frames[0], frames[1], `{"e":"serverShutdown","E":1770123456789}`)
		} else {
			sc.Send(frames[2:]...)
		}
		sc.WaitGone()
	})
	sameTicks(t, h.out.WaitFor(t, 4), want)
	testkit.Eventually(t, 5*time.Second, "reconnects_total{server_shutdown}", func() bool { return h.reconnects("server_shutdown") == 1 })
	if old := h.fb.Conns()[0]; old.Gone.Err() == nil {
		testkit.Eventually(t, 5*time.Second, "the old connection closed", func() bool { return old.Gone.Err() != nil })
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
					for _, s := range streamsOf(sc) {
						f, _ := ticker(strings.ToUpper(strings.TrimSuffix(s, "@ticker")), i, 0)
						sc.Send(f)
					}
				}
				sc.WaitGone()
			})
			got := h.out.WaitFor(t, perStream*len(tc.symbols))
			var lists []string
			for _, sc := range h.fb.Conns() {
				lists = append(lists, strings.Join(streamsOf(sc), "/"))
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
		sc.WaitGone()
	})
	sc := <-ready
	ping := func() error {
		ctx, cancel := context.WithTimeout(sc.Context(), 5*time.Second)
		defer cancel()
		return sc.WS.Ping(ctx) // returns once a pong echoing its payload arrives
	}
	if err := ping(); err != nil {
		t.Fatalf("first ping: %v", err)
	}
	// A flood within one pong interval gets no pongs: answering would break
	// Binance's 5 messages per second.
	const flood = 5
	for range flood {
		go func() { _ = sc.WS.Ping(sc.Context()) }()
	}
	dropped := func() float64 { return testutil.ToFloat64(h.m.PingsDropped.WithLabelValues(Exchange)) }
	testkit.Eventually(t, 5*time.Second, "flood pings dropped", func() bool { return dropped() == flood })
	if n := sc.Pongs.Load(); n != 1 {
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
			sc.Send(frame)
			sc.WaitGone()
		},
		// The server refuses five handshakes before it accepts: four 503s,
		// then a rate-limit answer whose Retry-After must be honoured.
		func(fb *wstest.Server) {
			fb.Reject(http.Header{"Retry-After": {"7"}}, 503, 503, 503, 503, http.StatusTooManyRequests)
		})
	const step = 50 * time.Millisecond
	wstest.AdvanceUntil(t, clk, step, "a connection after the refusals", func() bool { return len(h.out.Ticks()) == 1 })
	got := h.out.Ticks()
	got[0].ReceivedAt = 0
	sameTicks(t, got, []tick.Tick{want})

	at := h.fb.Attempts()
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
		sc.Send(frames...)
		sc.WaitGone()
	})
	ctx, cancel := context.WithCancel(context.Background())
	pumped := make(chan error, 1)
	go func() { pumped <- pump.Run(ctx) }()

	testkit.Eventually(t, 5*time.Second, "the read loop blocked on the full queue", func() bool { return testutil.ToFloat64(m.QueueWaiting) == 1 })
	// Blocked far longer than StaleAfter: that is the producer's stall, not
	// the server's silence, so the connection must stay.
	wstest.WaitTimers(t, clk, 2)
	clk.Advance(10 * time.Second)
	wstest.WaitTimers(t, clk, 2) // the watchdog looked and re-armed
	clk.Advance(10 * time.Second)
	wstest.WaitTimers(t, clk, 2)
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
		in, _ := instrument.Resolve(Exchange, want[i].Symbol)
		want[i].Base, want[i].Quote = in.Base, in.Quote // the pump gives every tick its instrument
	}
	sameTicks(t, got, want) // one worker: global order is kept too
	if n := h.totalReconnects(); n != 0 || len(h.fb.Conns()) != 1 {
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
		func(fb *wstest.Server) { fb.Reject(nil, 503) })
	testkit.Eventually(t, 5*time.Second, "a dial error", func() bool { return testutil.ToFloat64(h.m.DialErrors.WithLabelValues(Exchange)) == 1 })
	err := h.f.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "connection 1/1") || !strings.Contains(err.Error(), "503") {
		t.Errorf("Ready = %v, want the failed connection and its cause", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	q := &wstest.Collector{}
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
