package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

const topic = "market_data.ticks"

// startBroker starts an embedded broker on a free loopback port with the
// tick topic created.
func startBroker(t testing.TB, dir string) (*Embedded, ClientConfig) {
	t.Helper()
	emb, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := ClientConfig{Brokers: emb.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureTopic(ctx, cc, topic, 8, -1); err != nil {
		t.Fatal(err)
	}
	return emb, cc
}

func mkTick(pair, seq int) tick.Tick {
	return tick.Tick{
		Exchange:  "binance",
		Symbol:    fmt.Sprintf("SYM%dUSDT", pair),
		Timestamp: int64(1_700_000_000_000 + seq),
		Price:     tick.MustDecimal(fmt.Sprintf("%d.%02d", 100+seq, seq%100)),
		Volume:    tick.MustDecimal("10.5"),
		Bid:       tick.MustDecimal("99.99"),
		Ask:       tick.MustDecimal("100.01"),
	}
}

// produce sends n ticks per pair, interleaved, and waits for every ack.
func produce(t *testing.T, cc ClientConfig, pairs, n int) []tick.Tick {
	t.Helper()
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent []tick.Tick
	for i := 0; i < n; i++ {
		for pr := 0; pr < pairs; pr++ {
			tk := mkTick(pr, i)
			if err := p.Produce(ctx, &tk); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, tk)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	return sent
}

// recSink records every batch it accepts; it fails the first failN calls.
type recSink struct {
	mu       sync.Mutex
	failN    int
	calls    int
	connects int
	batches  [][]tick.Tick
	got      []tick.Tick
	notify   chan struct{}
	closed   bool
}

func newRecSink(failN int) *recSink { return &recSink{failN: failN, notify: make(chan struct{}, 1)} }

func (s *recSink) Connect(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.connects++
	return nil
}

func (s *recSink) WriteBatch(_ context.Context, b []tick.Tick) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.failN {
		return errors.New("induced failure")
	}
	cp := append([]tick.Tick(nil), b...) // the runtime reuses its buffer
	s.batches = append(s.batches, cp)
	s.got = append(s.got, cp...)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (s *recSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *recSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// waitFor waits until the sink has at least n ticks, or fails the test.
func (s *recSink) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for s.count() < n {
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("sink has %d ticks, want %d", s.count(), n)
		}
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
}

func (r running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("runtime returned %v", err)
	}
}

func runSink(t *testing.T, cc ClientConfig, group string, s sinks.Sink, batch sinks.BatchPolicy, clk clock.Clock, reg *health.Registry) running {
	t.Helper()
	rt, err := NewRuntime(RuntimeConfig{
		Client: cc, Topic: topic, Group: group, Name: group, Sink: s, Batch: batch, Clock: clk,
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, Health: reg,
		Metrics: NewRuntimeMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	return running{cancel, done}
}

// checkExactlyOnceInOrder asserts got holds exactly the sent ticks, each
// once, and in send order per pair.
func checkExactlyOnceInOrder(t *testing.T, sent, got []tick.Tick) {
	t.Helper()
	if len(got) != len(sent) {
		t.Fatalf("got %d ticks, want %d", len(got), len(sent))
	}
	want := map[string][]int64{}
	for _, tk := range sent {
		want[tk.Key()] = append(want[tk.Key()], tk.Timestamp)
	}
	have := map[string][]int64{}
	for _, tk := range got {
		have[tk.Key()] = append(have[tk.Key()], tk.Timestamp)
	}
	for k, w := range want {
		h := have[k]
		if fmt.Sprint(h) != fmt.Sprint(w) {
			t.Fatalf("pair %s: got timestamps %v, want %v", k, h, w)
		}
	}
}

func TestEverySinkGroupGetsEveryTickOnceInOrder(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	sent := produce(t, cc, 20, 100)
	var ss []*recSink
	for i := 0; i < 3; i++ {
		s := newRecSink(0)
		ss = append(ss, s)
		r := runSink(t, cc, fmt.Sprintf("tickflow.test%d", i), s, sinks.BatchPolicy{Size: 64, MaxWait: 10 * time.Millisecond}, nil, nil)
		defer r.stop(t)
	}
	for i, s := range ss {
		s.waitFor(t, len(sent))
		s.mu.Lock()
		got := append([]tick.Tick(nil), s.got...)
		s.mu.Unlock()
		t.Run(fmt.Sprint("group", i), func(t *testing.T) { checkExactlyOnceInOrder(t, sent, got) })
		for _, b := range s.batches {
			if len(b) > 64 {
				t.Fatalf("batch of %d exceeds size 64", len(b))
			}
		}
	}
	// Decimals survive the trip exactly.
	if g := ss[0].got[0].Price.String(); g != sent[0].Price.String() {
		t.Fatalf("price %s, want %s", g, sent[0].Price.String())
	}
}

func TestFailedBatchesAreRetriedNotSkippedAndRestartResumes(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	sent := produce(t, cc, 4, 50)
	reg := health.New()
	s := newRecSink(3)
	r := runSink(t, cc, "tickflow.retry", s, sinks.BatchPolicy{Size: 32, MaxWait: 5 * time.Millisecond}, nil, reg)
	s.waitFor(t, len(sent))
	r.stop(t)
	s.mu.Lock()
	if s.calls < 3+len(s.batches) {
		t.Fatalf("calls=%d batches=%d: the 3 failures were not retried", s.calls, len(s.batches))
	}
	got := append([]tick.Tick(nil), s.got...)
	s.mu.Unlock()
	checkExactlyOnceInOrder(t, sent, got)
	if !s.closed {
		t.Fatal("sink not closed at shutdown")
	}
	if st, ready := reg.Snapshot(context.Background()); !ready {
		t.Fatalf("health after recovery: %+v", st)
	}

	// A restart in the same group resumes after the last commit: only the
	// newly produced ticks arrive.
	more := produce(t, cc, 4, 10)
	s2 := newRecSink(0)
	r2 := runSink(t, cc, "tickflow.retry", s2, sinks.BatchPolicy{Size: 32, MaxWait: 5 * time.Millisecond}, nil, nil)
	s2.waitFor(t, len(more))
	r2.stop(t)
	// Exactly the new ticks: anything from the first round would be a
	// re-delivery past a commit.
	checkExactlyOnceInOrder(t, more, s2.got)
}

func TestFailingSinkReportsUnreadyAndCommitsNothing(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	sent := produce(t, cc, 2, 10)
	reg := health.New()
	s := newRecSink(1 << 30) // never succeeds
	r := runSink(t, cc, "tickflow.down", s, sinks.BatchPolicy{Size: 100, MaxWait: time.Millisecond}, nil, reg)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ready := reg.Snapshot(context.Background())
		s.mu.Lock()
		calls := s.calls
		s.mu.Unlock()
		if !ready && calls >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sink never reported unready")
		}
		time.Sleep(time.Millisecond) // polling a real condition with a deadline
	}
	r.stop(t)
	// Everything is still there for a healthy consumer in the same group.
	s2 := newRecSink(0)
	r2 := runSink(t, cc, "tickflow.down", s2, sinks.BatchPolicy{Size: 100, MaxWait: time.Millisecond}, nil, nil)
	s2.waitFor(t, len(sent))
	r2.stop(t)
	checkExactlyOnceInOrder(t, sent, s2.got)
}

func TestBatchPolicySizeAndMaxWaitWithFakeClock(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	s := newRecSink(0)
	r := runSink(t, cc, "tickflow.batch", s, sinks.BatchPolicy{Size: 10, Min: 10, MaxWait: 5 * time.Second}, clk, nil)
	defer r.stop(t)

	// 25 ticks: two full batches of 10 go out on size alone ...
	produce(t, cc, 1, 25)
	s.waitFor(t, 20)
	// ... and the remaining 5 wait for max_wait, which only the clock ends.
	clk.WaitTimers(1)
	if n := s.count(); n != 20 {
		t.Fatalf("before max_wait: %d ticks written, want 20", n)
	}
	clk.Advance(5 * time.Second)
	s.waitFor(t, 25)
	s.mu.Lock()
	defer s.mu.Unlock()
	sizes := []int{}
	for _, b := range s.batches {
		sizes = append(sizes, len(b))
	}
	if fmt.Sprint(sizes) != "[10 10 5]" {
		t.Fatalf("batch sizes %v, want [10 10 5]", sizes)
	}
}

func TestEmbeddedBrokerPersistsLogAndOffsets(t *testing.T) {
	dir := t.TempDir()
	emb, cc := startBroker(t, dir)
	sent := produce(t, cc, 3, 20)
	s := newRecSink(0)
	r := runSink(t, cc, "tickflow.persist", s, sinks.BatchPolicy{Size: 1000, MaxWait: time.Millisecond}, nil, nil)
	s.waitFor(t, len(sent))
	r.stop(t)
	emb.Close()

	// Reopen the same data dir: a new group reads the whole log back, the
	// old group has nothing left to read but new ticks.
	_, cc2 := startBroker(t, dir)
	all := newRecSink(0)
	ra := runSink(t, cc2, "tickflow.fresh", all, sinks.BatchPolicy{Size: 1000, MaxWait: time.Millisecond}, nil, nil)
	all.waitFor(t, len(sent))
	ra.stop(t)
	checkExactlyOnceInOrder(t, sent, all.got)

	more := produce(t, cc2, 3, 5)
	old := newRecSink(0)
	ro := runSink(t, cc2, "tickflow.persist", old, sinks.BatchPolicy{Size: 1000, MaxWait: time.Millisecond}, nil, nil)
	old.waitFor(t, len(more))
	ro.stop(t)
	checkExactlyOnceInOrder(t, more, old.got)
}

func TestUndecodableRecordsAreCountedAndSkipped(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Publish(ctx, topic, []byte("binance:BAD"), []byte(`{"exchange":`)); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	sent := produce(t, cc, 1, 3)
	m := NewRuntimeMetrics(prometheus.NewRegistry())
	s := newRecSink(0)
	rt, err := NewRuntime(RuntimeConfig{Client: cc, Topic: topic, Group: "tickflow.bad", Name: "bad", Sink: s,
		Batch: sinks.BatchPolicy{Size: 100, MaxWait: time.Millisecond}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(rctx) }()
	s.waitFor(t, len(sent))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m.decodeErrors.WithLabelValues("bad")); n != 1 {
		t.Fatalf("decode errors = %v, want 1", n)
	}
	checkExactlyOnceInOrder(t, sent, s.got)
}

// blockSink never finishes a batch until released.
type blockSink struct {
	*recSink
	release chan struct{}
	entered chan struct{}
}

func (s *blockSink) WriteBatch(ctx context.Context, b []tick.Tick) error {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	select {
	case <-s.release:
		return s.recSink.WriteBatch(ctx, b)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestStalledSinkDoesNotDelayAnother(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	stalled := &blockSink{recSink: newRecSink(0), release: make(chan struct{}), entered: make(chan struct{}, 1)}
	rs := runSink(t, cc, "tickflow.stalled", stalled, sinks.BatchPolicy{Size: 10, MaxWait: time.Millisecond}, nil, nil)
	healthy := newRecSink(0)
	rh := runSink(t, cc, "tickflow.healthy", healthy, sinks.BatchPolicy{Size: 10, MaxWait: time.Millisecond}, nil, nil)
	defer rh.stop(t)

	sent := produce(t, cc, 5, 200)
	<-stalled.entered // the stalled sink holds its first batch
	healthy.waitFor(t, len(sent))
	checkExactlyOnceInOrder(t, sent, healthy.got)

	// Released, the stalled sink catches up with nothing skipped.
	close(stalled.release)
	stalled.waitFor(t, len(sent))
	rs.stop(t)
	checkExactlyOnceInOrder(t, sent, stalled.got)
}

// While a sink keeps failing the runtime fetches nothing, yet its lag gauge
// must keep counting what arrives: an outage is when operators look at it.
func TestLagGrowsWhileSinkFails(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	m := NewRuntimeMetrics(prometheus.NewRegistry())
	s := newRecSink(1 << 30) // never succeeds
	rt, err := NewRuntime(RuntimeConfig{Client: cc, Topic: topic, Group: "tickflow.lag", Name: "lag", Sink: s,
		Batch: sinks.BatchPolicy{Size: 5, MaxWait: time.Millisecond}, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()

	lag := func() float64 { return testutil.ToFloat64(m.lag.WithLabelValues("lag")) }
	waitLag := func(want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for lag() != want {
			if time.Now().After(deadline) {
				t.Fatalf("lag %v, want %v", lag(), want)
			}
			time.Sleep(time.Millisecond) // polling a real condition with a deadline
		}
	}
	produce(t, cc, 1, 5)
	deadline := time.Now().Add(10 * time.Second)
	for failed := 0; failed < 2; {
		s.mu.Lock()
		failed = s.calls
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the sink never failed a batch")
		}
		time.Sleep(time.Millisecond) // polling a real condition with a deadline
	}
	waitLag(0) // the failing batch is in hand: nothing left unpolled
	produce(t, cc, 1, 20)
	// What arrived during the outage, seen from the broker: all 20, less
	// the next batch (at most Size) the runtime may have polled to decode
	// while the failing one is retried.
	deadline = time.Now().Add(10 * time.Second)
	for l := lag(); l < 20-5 || l > 20; l = lag() {
		if time.Now().After(deadline) {
			t.Fatalf("lag %v during the outage, want 15..20", l)
		}
		time.Sleep(time.Millisecond) // polling a real condition with a deadline
	}
}
