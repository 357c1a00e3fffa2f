package ingest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

func waitTimers(t *testing.T, clk *clock.Fake, n int) {
	t.Helper()
	if !clk.WaitTimersFor(n, 5*time.Second) {
		t.Fatalf("timed out waiting for %d pending timers (have %d)", n, clk.Pending())
	}
}

func mkTick(sym string, seq int) tick.Tick {
	return tick.Tick{
		Exchange:  "test",
		Symbol:    sym,
		Timestamp: int64(1_700_000_000_000 + seq),
		Price:     tick.MustDecimal(fmt.Sprintf("100.%02d", seq%100)),
	}
}

// recorder is a Publisher that records what it was given. Produce waits for
// gate (when set) and fails the first failFirst calls.
type recorder struct {
	gate      chan struct{}
	failFirst int

	mu       sync.Mutex
	calls    int
	got      []tick.Tick
	flushed  int
	inFlight int
}

func (r *recorder) Produce(ctx context.Context, t *tick.Tick) error {
	r.mu.Lock()
	r.calls++
	call := r.calls
	r.inFlight++
	r.mu.Unlock()
	defer func() { r.mu.Lock(); r.inFlight--; r.mu.Unlock() }()
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if call <= r.failFirst {
		return errors.New("broker unavailable")
	}
	runtime.Gosched() // let other workers interleave, so ordering bugs show
	r.mu.Lock()
	r.got = append(r.got, *t)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Flush(ctx context.Context) error {
	r.mu.Lock()
	r.flushed++
	r.mu.Unlock()
	return nil
}

func (r *recorder) produced() []tick.Tick {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tick.Tick(nil), r.got...)
}

func (r *recorder) busy() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight
}

// checkPairOrder asserts got holds exactly want's ticks, each pair's in
// want's order.
func checkPairOrder(t *testing.T, want, got []tick.Tick) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("produced %d ticks, want %d", len(got), len(want))
	}
	byPair := func(ts []tick.Tick) map[tick.Pair][]int64 {
		m := map[tick.Pair][]int64{}
		for _, x := range ts {
			m[x.Pair()] = append(m[x.Pair()], x.Timestamp)
		}
		return m
	}
	w, g := byPair(want), byPair(got)
	for p, ws := range w {
		if fmt.Sprint(ws) != fmt.Sprint(g[p]) {
			t.Errorf("%s: produced in order %v, want %v", p, g[p], ws)
		}
	}
}

func startPump(t *testing.T, q *Queue, pub Publisher, o PumpOptions) (stop func() error) {
	t.Helper()
	p, err := NewPump(q, pub, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				runErr = errors.New("pump did not return within 5s of cancel")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestQueueBackpressureBlocksAndDropsNothing(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	const size, n, workers = 4, 200, 2
	q, err := NewQueue(size, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	pub := &recorder{gate: make(chan struct{})}
	stop := startPump(t, q, pub, PumpOptions{Workers: workers, Metrics: reg})

	var want []tick.Tick
	for i := range n {
		want = append(want, mkTick([]string{"AAA", "BBB", "CCC"}[i%3], i))
	}
	var mu sync.Mutex
	accepted := 0
	readLoop := make(chan error, 1)
	go func() {
		for i := range want {
			if err := q.Enqueue(context.Background(), &want[i]); err != nil {
				readLoop <- err
				return
			}
			mu.Lock()
			accepted++
			mu.Unlock()
		}
		readLoop <- nil
	}()

	// The publisher is stalled: the read loop must end up blocked on a full
	// queue, with the wait visible in the metrics.
	testkit.Eventually(t, 5*time.Second, "read loop blocked on the full queue", func() bool {
		return testutil.ToFloat64(m.QueueWaiting) == 1 && q.Len() == size
	})
	mu.Lock()
	stalledAt := accepted
	mu.Unlock()
	// Beyond the queue only the pump's pipeline holds ticks: per worker one
	// in Produce plus its small buffer, and one in the dispatcher's hand.
	if limit := size + workers*(1+4) + 1; stalledAt > limit {
		t.Errorf("accepted %d ticks while the publisher was stalled; the pipeline holds at most %d", stalledAt, limit)
	}
	if got := testutil.ToFloat64(m.QueueDepth); got != size {
		t.Errorf("queue depth gauge = %v, want %d", got, size)
	}

	close(pub.gate)
	if err := <-readLoop; err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	testkit.Eventually(t, 5*time.Second, "every tick produced", func() bool { return len(pub.produced()) == n })
	if err := stop(); err != nil {
		t.Fatalf("pump: %v", err)
	}
	checkPairOrder(t, want, pub.produced())
	if got := testutil.ToFloat64(m.QueueBlocked.WithLabelValues("test")); got <= 0 {
		t.Errorf("queue blocked seconds = %v, want > 0", got)
	}
	if got := testutil.ToFloat64(m.QueueWaiting); got != 0 {
		t.Errorf("blocked writers = %v after the stall, want 0", got)
	}
	if got := testutil.ToFloat64(m.Unproduced.WithLabelValues("test")); got != 0 {
		t.Errorf("unproduced = %v, want 0", got)
	}
	var produced float64
	for _, s := range []string{"AAA", "BBB", "CCC"} {
		produced += testutil.ToFloat64(m.Handed.WithLabelValues("test", s))
	}
	if produced != n {
		t.Errorf("ticks_handed_total = %v, want %d", produced, n)
	}
}

func TestPumpDrainsQueueOnShutdown(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, _ := NewQueue(64, nil, reg)
	pub := &recorder{gate: make(chan struct{})}
	stop := startPump(t, q, pub, PumpOptions{Workers: 3, Metrics: reg})

	var want []tick.Tick
	for i := range 50 {
		want = append(want, mkTick(fmt.Sprintf("S%d", i%5), i))
		if err := q.Enqueue(context.Background(), &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Shut down while nearly everything is still queued, then let the
	// publisher go: everything accepted must still be produced.
	errc := make(chan error, 1)
	go func() { errc <- stop() }()
	testkit.Eventually(t, 5*time.Second, "queue closed", func() bool {
		probe := mkTick("PROBE", len(want))
		err := q.Enqueue(context.Background(), &probe)
		if err == nil { // accepted before the close: must be produced too
			want = append(want, probe)
		}
		return errors.Is(err, ErrClosed)
	})
	close(pub.gate)
	if err := <-errc; err != nil {
		t.Fatalf("pump: %v", err)
	}
	checkPairOrder(t, want, pub.produced())
	if pub.flushed != 1 {
		t.Errorf("publisher flushed %d times, want once at the end of the drain", pub.flushed)
	}
}

func TestPumpReportsWhatTheDrainDeadlineCut(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	q, _ := NewQueue(64, nil, reg)
	pub := &recorder{gate: make(chan struct{})} // never opens
	stop := startPump(t, q, pub, PumpOptions{Workers: 2, DrainTimeout: 3 * time.Second, Clock: clk, Metrics: reg})
	for i := range 10 {
		tk := mkTick("AAA", i)
		if err := q.Enqueue(context.Background(), &tk); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 5*time.Second, "publisher busy", func() bool { return pub.busy() == 1 })

	errc := make(chan error, 1)
	go func() { errc <- stop() }()
	waitTimers(t, clk, 1)
	clk.Advance(3 * time.Second)
	err := <-errc
	if !errors.Is(err, ErrDrainIncomplete) || !strings.Contains(err.Error(), "10 accepted ticks not acknowledged") {
		t.Fatalf("Run = %v, want ErrDrainIncomplete reporting 10 ticks", err)
	}
	if got := testutil.ToFloat64(m.Unproduced.WithLabelValues("test")); got != 10 {
		t.Errorf("unproduced_total = %v, want 10", got)
	}
	if pub.flushed != 0 {
		t.Errorf("flushed after the deadline passed")
	}
}

func TestPumpRetriesFailedProduceInOrder(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	q, _ := NewQueue(16, nil, reg)
	pub := &recorder{failFirst: 3}
	stop := startPump(t, q, pub, PumpOptions{Workers: 1, RetryMin: time.Microsecond, RetryMax: time.Millisecond, Metrics: reg})
	var want []tick.Tick
	for i := range 10 {
		want = append(want, mkTick("AAA", i))
		if err := q.Enqueue(context.Background(), &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 5*time.Second, "every tick produced", func() bool { return len(pub.produced()) == len(want) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkPairOrder(t, want, pub.produced())
	if got := testutil.ToFloat64(m.ProduceErrors.WithLabelValues("test")); got != 3 {
		t.Errorf("produce_errors_total = %v, want 3", got)
	}
}

func TestPumpKeepsEachPairInOrderAcrossWorkers(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, _ := NewQueue(32, nil, reg)
	pub := &recorder{}
	stop := startPump(t, q, pub, PumpOptions{Workers: 4, Metrics: reg})
	var want []tick.Tick
	for i := range 2000 {
		want = append(want, mkTick(fmt.Sprintf("P%02d", i%13), i))
	}
	for i := range want {
		if err := q.Enqueue(context.Background(), &want[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkPairOrder(t, want, pub.produced())
}

func TestEnqueueGivesUpWhenContextEnds(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, _ := NewQueue(1, nil, reg)
	a, b := mkTick("AAA", 1), mkTick("AAA", 2)
	if err := q.Enqueue(context.Background(), &a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- q.Enqueue(ctx, &b) }()
	m, _ := NewMetrics(reg)
	testkit.Eventually(t, 5*time.Second, "enqueue blocked", func() bool { return testutil.ToFloat64(m.QueueWaiting) == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue = %v, want context.Canceled", err)
	}
	if q.Len() != 1 {
		t.Errorf("queue holds %d ticks, want only the accepted one", q.Len())
	}
	// Close wakes a blocked writer too.
	go func() { errc <- q.Enqueue(context.Background(), &b) }()
	testkit.Eventually(t, 5*time.Second, "enqueue blocked again", func() bool { return testutil.ToFloat64(m.QueueWaiting) == 1 })
	q.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close = %v, want ErrClosed", err)
	}
}

func TestNewQueueRejectsBadSize(t *testing.T) {
	for _, size := range []int{0, -1} {
		if _, err := NewQueue(size, nil, nil); err == nil {
			t.Errorf("NewQueue(%d) succeeded", size)
		}
	}
}

func TestNewMetricsSharesCollectorsPerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b.Received.WithLabelValues("x", "Y").Inc()
	if got := testutil.ToFloat64(a.Received.WithLabelValues("x", "Y")); got != 1 {
		t.Fatalf("second NewMetrics on one registry did not share collectors (got %v)", got)
	}

	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickflow_ingest_ticks_received_total", Help: "x"}))
	if _, err := NewMetrics(clash); err == nil {
		t.Fatal("NewMetrics accepted a registry holding a different collector under its name")
	}
}

func TestSometimes(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	s := Sometimes{Every: time.Second, Clock: clk}
	steps := []struct {
		advance    time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{0, false, 0},
		{500 * time.Millisecond, false, 0},
		{499 * time.Millisecond, false, 0},
		{time.Millisecond, true, 3},
		{time.Hour, true, 0},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		ok, n := s.Allow()
		if ok != st.ok || n != st.suppressed {
			t.Errorf("step %d: Allow() = %v, %d; want %v, %d", i, ok, n, st.ok, st.suppressed)
		}
	}
}

// A live source's hand-off: it waits a bounded time for room, then drops
// the tick and counts it per pair; the queue keeps what it accepted.
func TestEnqueueWithinDropsAndCountsPerPairWhenFull(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := NewMetrics(reg)
	q, _ := NewQueue(2, nil, reg)
	for i := range 2 {
		tk := mkTick("AAA", i)
		if err := q.EnqueueWithin(context.Background(), &tk, 0); err != nil {
			t.Fatal(err)
		}
	}
	a, b := mkTick("AAA", 2), mkTick("BBB", 3)
	if err := q.EnqueueWithin(context.Background(), &a, 20*time.Millisecond); !errors.Is(err, ErrFull) {
		t.Fatalf("EnqueueWithin on a full queue = %v, want ErrFull", err)
	}
	for range 3 {
		if err := q.EnqueueWithin(context.Background(), &b, 0); !errors.Is(err, ErrFull) {
			t.Fatalf("EnqueueWithin(0) on a full queue = %v, want ErrFull", err)
		}
	}
	if got := testutil.ToFloat64(m.Dropped.WithLabelValues("test", "AAA")); got != 1 {
		t.Errorf("dropped AAA = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.Dropped.WithLabelValues("test", "BBB")); got != 3 {
		t.Errorf("dropped BBB = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.Accepted.WithLabelValues("test")); got != 2 || q.Len() != 2 {
		t.Errorf("accepted %v, queued %d; want 2, 2", got, q.Len())
	}
	<-q.ch // room again: the next one is taken
	if err := q.EnqueueWithin(context.Background(), &b, 0); err != nil {
		t.Fatalf("EnqueueWithin with room = %v", err)
	}
	q.Close()
	if err := q.EnqueueWithin(context.Background(), &b, time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("EnqueueWithin after Close = %v, want ErrClosed", err)
	}
}

// The pump is the one place ticks get their normalized instrument: whatever
// the exchange's symbol form, the produced tick carries Base and Quote; a
// source's own answer is kept; a symbol that does not resolve is published
// without them and counted; and what the resolver learns later (an
// exchange listing) applies to ticks after it.
func TestPumpFillsInstrument(t *testing.T) {
	reg := prometheus.NewRegistry()
	q, _ := NewQueue(64, nil, reg)
	pub := &recorder{}
	var r instrument.Resolver
	stop := startPump(t, q, pub, PumpOptions{Workers: 2, Resolver: &r, Metrics: reg})
	at := func(ex, sym, base, quote string, seq int) tick.Tick {
		tk := mkTick(sym, seq)
		tk.Exchange, tk.Base, tk.Quote = ex, base, quote
		return tk
	}
	cases := []struct {
		in         tick.Tick
		base, quot string
	}{
		{at("binance", "BTCUSDT", "", "", 1), "BTC", "USDT"},
		{at("okx", "BTC-USDT", "", "", 2), "BTC", "USDT"},
		{at("bybit", "BTCUSDT", "", "", 3), "BTC", "USDT"},
		{at("coinbase", "BTC-USD", "", "", 4), "BTC", "USD"},
		{at("kraken", "XBT/USD", "", "", 5), "BTC", "USD"},
		{at("sim", "ETHUSDT", "", "", 6), "ETH", "USDT"},
		{at("binance", "BTCUSDT", "", "", 7), "BTC", "USDT"},        // second tick of a pair: remembered
		{at("bybit", "XUSDT", "WEIRD", "COIN", 8), "WEIRD", "COIN"}, // the source knew: kept
		{at("binance", "ADAEUR", "", "", 9), "", ""},                // ambiguous without a listing
		{at("nowhere", "BTC-USD", "", "", 10), "", ""},              // no symbol form for the exchange
	}
	for i := range cases {
		if err := q.Enqueue(context.Background(), &cases[i].in); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 5*time.Second, "every tick produced", func() bool { return len(pub.produced()) == len(cases) })
	got := map[int64]tick.Tick{}
	for _, tk := range pub.produced() {
		got[tk.Timestamp] = tk
	}
	for _, c := range cases {
		out := got[c.in.Timestamp]
		if out.Base != c.base || out.Quote != c.quot || out.Symbol != c.in.Symbol {
			t.Errorf("%s:%s produced as %s (%q/%q), want base %q quote %q", c.in.Exchange, c.in.Symbol, out.Symbol, out.Base, out.Quote, c.base, c.quot)
		}
	}
	for ex, want := range map[string]float64{"binance": 1, "nowhere": 1, "okx": 0} {
		if n := testkit.Metric(reg, "tickflow_ingest_ticks_unresolved_total", "exchange", ex); n != want {
			t.Errorf("ticks_unresolved_total{exchange=%q} = %v, want %v", ex, n, want)
		}
	}

	// Binance's listing says ADAEUR is ADA-EUR: the next tick has it.
	if err := r.Add("binance", "ADAEUR", instrument.Instrument{Base: "ADA", Quote: "EUR"}); err != nil {
		t.Fatal(err)
	}
	next := at("binance", "ADAEUR", "", "", 11)
	if err := q.Enqueue(context.Background(), &next); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	prod := pub.produced()
	if last := prod[len(prod)-1]; last.Timestamp != next.Timestamp || last.Instrument() != "ADA-EUR" {
		t.Errorf("after the listing: %s %q, want ADA-EUR", last.Symbol, last.Instrument())
	}
}
