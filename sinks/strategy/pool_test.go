package strategy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// testEvery triggers on every tick; its Execute behaves as "mode" says:
// fast (decide at once), block (wait for ctx, i.e. always time out),
// ignore (ignore ctx and wait for release), fail (return an error).
type testEvery struct {
	mode string
}

var exec struct {
	running, max, calls atomic.Int64
	release             chan struct{}
}

func init() {
	RegisterType(Type{
		Name: "test_every",
		Params: func() any {
			return &struct {
				Mode string `yaml:"mode"`
			}{Mode: "fast"}
		},
		New: func(p any) (Strategy, error) {
			return &testEvery{mode: p.(*struct {
				Mode string `yaml:"mode"`
			}).Mode}, nil
		},
	})
}

func (s *testEvery) ShouldTrigger(t *tick.Tick) (Trigger, bool) {
	return trigger(t, signal.Buy, "every tick"), true
}

func (s *testEvery) Execute(ctx context.Context, tr Trigger) (*Decision, error) {
	n := exec.running.Add(1)
	defer exec.running.Add(-1)
	exec.calls.Add(1)
	for {
		m := exec.max.Load()
		if n <= m || exec.max.CompareAndSwap(m, n) {
			break
		}
	}
	switch s.mode {
	case "block":
		<-ctx.Done()
		return nil, ctx.Err()
	case "ignore":
		<-exec.release
	case "fail":
		return nil, errors.New("model unavailable")
	}
	return &Decision{Side: tr.Side, Reason: tr.Reason}, nil
}

func (s *testEvery) State() (json.RawMessage, error) { return json.RawMessage(`{}`), nil }
func (s *testEvery) Restore(json.RawMessage) error   { return nil }

func resetExec() {
	exec.running.Store(0)
	exec.max.Store(0)
	exec.calls.Store(0)
	exec.release = make(chan struct{})
}

func everyConfig(t *testing.T, mode string, workers, queue int, timeout time.Duration) *Config {
	c := parseConfig(t, fmt.Sprintf("strategies:\n  - {name: e, type: test_every, exchange: binance, symbol: BTCUSDT, mode: %s}\n", mode))
	c.Workers, c.Queue, c.Timeout = workers, queue, timeout
	return c
}

func rising(n int) []tick.Tick {
	out := make([]tick.Tick, n)
	for i := range out {
		out[i] = tk("binance", "BTCUSDT", time.Duration(i)*time.Millisecond, fmt.Sprint(100+i))
	}
	return out
}

// A flood of fast triggers through a small queue: every one executes, the
// pool never runs more than its workers, and waiting is counted.
func TestPoolFloodOfFastTriggers(t *testing.T) {
	resetExec()
	h := newHarness(t, everyConfig(t, "fast", 2, 4, 5*time.Second), nil)
	const n = 5000
	h.Write(rising(n)...)
	if got := len(h.signals()); got != n {
		t.Fatalf("%d signals, want %d", got, n)
	}
	if m := exec.max.Load(); m > 2 {
		t.Fatalf("%d Executes ran at once with 2 workers", m)
	}
	if h.Counter("tickflow_strategy_trigger_waits_total") == 0 {
		t.Fatal("a 4-deep queue took 5000 triggers without ever waiting")
	}
	if h.Counter("tickflow_strategy_triggers_dropped_total") != 0 {
		t.Fatal("fast triggers were dropped")
	}
	// Signals come out in trigger order, whatever order the workers ran.
	for i, s := range h.signals() {
		if s.Timestamp != t0+int64(i) {
			t.Fatalf("signal %d has time %d", i, s.Timestamp-t0)
		}
	}
}

// A flood of triggers whose Execute never finishes in time: the batch
// still completes within a bounded time, goroutines stay bounded, the
// overruns are timed out and the rest dropped, all counted.
func TestPoolFloodOfStuckTriggers(t *testing.T) {
	resetExec()
	const timeout = 100 * time.Millisecond
	h := newHarness(t, everyConfig(t, "block", 2, 4, timeout), nil)
	before := runtime.NumGoroutine()
	start := time.Now()
	h.Write(rising(1000)...)
	if d := time.Since(start); d > 20*timeout {
		t.Fatalf("batch took %s with a %s timeout", d, timeout)
	}
	if len(h.signals()) != 0 {
		t.Fatal("timed-out executions produced signals")
	}
	if m := exec.max.Load(); m > 2 {
		t.Fatalf("%d Executes ran at once with 2 workers", m)
	}
	timeouts := h.Counter("tickflow_strategy_exec_timeouts_total")
	dropped := h.Counter("tickflow_strategy_triggers_dropped_total")
	if timeouts < 2 || dropped < 900 || timeouts+dropped != 1000 {
		t.Fatalf("timeouts %v + dropped %v, want all 1000 accounted for, mostly dropped", timeouts, dropped)
	}
	if g := runtime.NumGoroutine(); g > before+10 {
		t.Fatalf("goroutines grew from %d to %d", before, g)
	}
}

// An Execute that ignores its context keeps its worker but not the batch.
func TestPoolExecuteIgnoringContext(t *testing.T) {
	resetExec()
	clk := clock.NewFake(time.Unix(0, 0))
	h := newHarness(t, everyConfig(t, "ignore", 1, 1, time.Second), clk)
	var once sync.Once
	release := func() { once.Do(func() { close(exec.release) }) }
	t.Cleanup(release) // before the harness stops the pool, even on failure
	ticks := rising(3)
	write := func(ts ...tick.Tick) chan error {
		done := make(chan error, 1)
		go func() { done <- h.Sink.WriteBatch(context.Background(), ts) }()
		return done
	}

	// The only worker takes the first trigger and never comes back.
	done := write(ticks[0])
	clk.WaitTimers(2) // its watchdog, and the batch waiting for it
	testkit.Eventually(t, 10*time.Second, "the worker to run the first trigger", func() bool { return exec.running.Load() == 1 })
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	if got := h.Counter("tickflow_strategy_exec_timeouts_total"); got != 1 {
		t.Fatalf("timeouts %v, want 1", got)
	}

	// Next batch: one trigger fills the queue, the other waits for room
	// that never comes and is dropped; the queued one is then abandoned.
	done = write(ticks[1:]...)
	clk.WaitTimers(1) // the waiting submit
	clk.Advance(time.Second)
	clk.WaitTimers(1) // the batch waiting for the queued trigger
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
	release()
	if got := h.Counter("tickflow_strategy_triggers_dropped_total", "reason", "queue_full"); got != 1 {
		t.Fatalf("dropped queue_full %v, want 1", got)
	}
	if got := h.Counter("tickflow_strategy_triggers_dropped_total", "reason", "abandoned"); got != 1 {
		t.Fatalf("dropped abandoned %v, want 1", got)
	}
	if exec.max.Load() != 1 || exec.calls.Load() != 1 {
		t.Fatalf("%d calls, %d at once, want one", exec.calls.Load(), exec.max.Load())
	}
	if len(h.signals()) != 0 {
		t.Fatal("lost triggers produced signals")
	}
}

func TestExecuteErrorIsCountedNotFatal(t *testing.T) {
	resetExec()
	h := newHarness(t, everyConfig(t, "fail", 2, 8, time.Second), nil)
	h.Write(rising(3)...)
	if got := h.Counter("tickflow_strategy_exec_errors_total"); got != 3 {
		t.Fatalf("exec errors %v, want 3", got)
	}
	if len(h.signals()) != 0 {
		t.Fatal("failed executions produced signals")
	}
}

// Shutdown waits for a stuck Execute at most one timeout.
func TestRunReturnsDespiteStuckExecute(t *testing.T) {
	resetExec()
	defer close(exec.release)
	clk := clock.NewFake(time.Unix(0, 0))
	env := senv()
	env.Clock = clk
	s, err := New(env, everyConfig(t, "ignore", 1, 1, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, "the pool to start", s.pool.running.Load)
	if err := s.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- s.WriteBatch(context.Background(), rising(1)) }()
	testkit.Eventually(t, 10*time.Second, "the stuck Execute", func() bool { return exec.running.Load() == 1 })
	clk.WaitTimers(2) // watchdog and batch wait
	clk.Advance(time.Second)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	cancel()
	clk.WaitTimers(1) // the shutdown grace
	clk.Advance(time.Second)
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
