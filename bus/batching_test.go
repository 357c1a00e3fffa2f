package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// gateSink records the batches it accepts; once armed, the next call
// blocks until released. With ignoreCtx it does not even return when its
// context ends: a write that hangs like a killed process's.
type gateSink struct {
	*recSink
	ignoreCtx bool

	mu      sync.Mutex
	armed   bool
	release chan struct{}
	entered chan int // the blocked batch's size
}

func newGateSink(ignoreCtx bool) *gateSink {
	return &gateSink{recSink: newRecSink(0), ignoreCtx: ignoreCtx, release: make(chan struct{}), entered: make(chan int, 1)}
}

func (s *gateSink) arm() {
	s.mu.Lock()
	s.armed = true
	s.mu.Unlock()
}

func (s *gateSink) WriteBatch(ctx context.Context, b []tick.Tick) error {
	s.mu.Lock()
	block := s.armed
	s.armed = false
	s.mu.Unlock()
	if block {
		s.entered <- len(b)
		if s.ignoreCtx {
			<-s.release
		} else {
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return s.recSink.WriteBatch(ctx, b)
}

func startRuntime(t *testing.T, cc ClientConfig, group string, s sinks.Sink, batch sinks.BatchPolicy, m *RuntimeMetrics) (running, *Runtime) {
	t.Helper()
	rt, err := NewRuntime(RuntimeConfig{
		Client: cc, Topic: topic, Group: group, Name: "gate", Sink: s, Batch: batch,
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, ShutdownTimeout: 200 * time.Millisecond,
		Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	return running{cancel, done}, rt
}

// filling is how many records the batch being filled holds.
func (r *RecordRuntime[T]) filling() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.cur.records)
}

// A batch goes as soon as a poll returned records (no max_wait, which is an
// hour here), and while it is being written the next one is fetched and
// decoded, so under backlog the next batch holds everything that arrived.
func TestBatchesGoAtOnceAndGrowWhileOneIsWritten(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	m := NewRuntimeMetrics(prometheus.NewRegistry())
	s := newGateSink(false)
	s.arm()
	r, rt := startRuntime(t, cc, "tickflow.grow", s, sinks.BatchPolicy{Size: 10_000, MaxWait: time.Hour}, m)
	defer r.stop(t)

	first := produce(t, cc, 1, 1)
	if n := <-s.entered; n != 1 {
		t.Fatalf("first batch holds %d ticks, want the 1 polled", n)
	}
	// While that write hangs, 2000 more arrive and are all fetched into
	// the next batch: nothing is left unpolled.
	more := produce(t, cc, 4, 500)
	testkit.Eventually(t, 10*time.Second, "next batch fetched while the first is written", func() bool {
		return rt.filling() == len(more)
	})
	close(s.release)
	s.waitFor(t, len(first)+len(more))
	s.mu.Lock()
	sizes := []int{}
	for _, b := range s.batches {
		sizes = append(sizes, len(b))
	}
	got := append([]tick.Tick(nil), s.got...)
	s.mu.Unlock()
	if len(sizes) != 2 || sizes[1] != len(more) {
		t.Fatalf("batch sizes %v, want [1 %d]: the second should hold the whole backlog", sizes, len(more))
	}
	checkExactlyOnceInOrder(t, append(first, more...), got)
}

// Killed while a batch is being written and the next one is already
// fetched behind it: neither is committed, so a restart in the same group
// replays both, and nothing written before is replayed.
func TestKillMidBatchReplaysTheBatchAndTheOneBehindIt(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("write-ignores-cancel=%v", hang), func(t *testing.T) {
			_, cc := startBroker(t, t.TempDir())
			m := NewRuntimeMetrics(prometheus.NewRegistry())
			s := newGateSink(hang)
			group := "tickflow.kill"
			r, rt := startRuntime(t, cc, group, s, sinks.BatchPolicy{Size: 300, MaxWait: time.Hour}, m)

			before := produce(t, cc, 4, 25)
			s.waitFor(t, len(before))
			s.arm()
			after := produce(t, cc, 4, 150)
			held := <-s.entered
			// The rest (up to the 300 ceiling) is fetched behind it.
			want := min(300, len(after)-held)
			testkit.Eventually(t, 10*time.Second, "the next batch fetched behind the hung one", func() bool {
				return rt.filling() == want
			})
			r.cancel()
			if err := <-r.done; err != nil {
				t.Fatalf("runtime returned %v", err)
			}
			if n := s.count(); n != len(before) {
				t.Fatalf("sink holds %d ticks after the kill, want the %d written before it", n, len(before))
			}
			close(s.release) // a late success must not be marked: the runtime gave up on it

			s2 := newRecSink(0)
			r2, _ := startRuntime(t, cc, group, s2, sinks.BatchPolicy{Size: 300, MaxWait: time.Hour}, NewRuntimeMetrics(prometheus.NewRegistry()))
			s2.waitFor(t, len(after))
			r2.stop(t)
			checkExactlyOnceInOrder(t, after, s2.got)
		})
	}
}

// min_interval: the first batch goes at once; the next one, though it has
// reached Min, waits until the interval since the first launch has passed
// and then holds everything that arrived meanwhile; a batch that never
// reaches Min still goes at max_wait, as without an interval.
func TestMinIntervalHoldsABatchThatReachedMin(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	s := newRecSink(0)
	rt, err := NewRuntime(RuntimeConfig{
		Client: cc, Topic: topic, Group: "tickflow.interval", Name: "interval", Sink: s, Clock: clk,
		Batch:      sinks.BatchPolicy{Size: 1000, Min: 5, MaxWait: 5 * time.Second, MinInterval: time.Second},
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, Metrics: NewRuntimeMetrics(prometheus.NewRegistry()),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer running{cancel, done}.stop(t)

	first := produce(t, cc, 1, 5)
	s.waitFor(t, len(first))
	more := produce(t, cc, 4, 5)
	testkit.Eventually(t, 10*time.Second, "the held batch polled", func() bool { return rt.filling() == len(more) })
	clk.WaitTimers(2) // the held batch's max_wait and the interval's gate
	if n := s.count(); n != len(first) {
		t.Fatalf("%d ticks written before min_interval passed, want %d", n, len(first))
	}
	clk.Advance(time.Second)
	s.waitFor(t, len(first)+len(more))

	last := produce(t, cc, 1, 3) // below Min
	testkit.Eventually(t, 10*time.Second, "the short batch polled", func() bool { return rt.filling() == len(last) })
	clk.WaitTimers(1)
	clk.Advance(5 * time.Second)
	s.waitFor(t, len(first)+len(more)+len(last))

	s.mu.Lock()
	sizes := []int{}
	for _, b := range s.batches {
		sizes = append(sizes, len(b))
	}
	got := append([]tick.Tick(nil), s.got...)
	s.mu.Unlock()
	if fmt.Sprint(sizes) != fmt.Sprintf("[%d %d %d]", len(first), len(more), len(last)) {
		t.Fatalf("batch sizes %v, want [%d %d %d]", sizes, len(first), len(more), len(last))
	}
	checkExactlyOnceInOrder(t, append(append(first, more...), last...), got)
}
