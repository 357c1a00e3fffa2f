package app

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// eventLog records what happened, in order.
type eventLog struct {
	mu  sync.Mutex
	log []string
}

func (e *eventLog) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *eventLog) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// serviceSink is a sink whose batches need its service running, like the
// strategy pool: it starts serving only after Run begins, and says so.
type serviceSink struct {
	ev      *eventLog
	started chan struct{}
	serving sync.Mutex
	up      bool
	fail    error
}

func (s *serviceSink) Connect(context.Context) error                 { return nil }
func (s *serviceSink) WriteBatch(context.Context, []tick.Tick) error { return nil }
func (s *serviceSink) Close(context.Context) error                   { return nil }
func (s *serviceSink) Started() <-chan struct{}                      { return s.started }

func (s *serviceSink) Run(ctx context.Context) error {
	s.ev.add("service run")
	if s.fail != nil {
		return s.fail
	}
	s.serving.Lock()
	s.up = true
	s.serving.Unlock()
	s.ev.add("service serving")
	close(s.started)
	<-ctx.Done()
	s.serving.Lock()
	s.up = false
	s.serving.Unlock()
	s.ev.add("service stopped")
	return nil
}

func (s *serviceSink) isUp() bool {
	s.serving.Lock()
	defer s.serving.Unlock()
	return s.up
}

// fakeRuntime stands in for bus.Runtime: it writes a final batch when its
// context ends, which needs the sink's service.
type fakeRuntime struct {
	ev   *eventLog
	name string
	svc  *serviceSink
	err  error
}

func (r *fakeRuntime) Run(ctx context.Context) error {
	if r.svc != nil && !r.svc.isUp() {
		r.ev.add(r.name + " started before its service served")
	}
	r.ev.add(r.name + " consuming")
	if r.err != nil {
		return r.err
	}
	<-ctx.Done()
	if r.svc != nil && !r.svc.isUp() {
		r.ev.add(r.name + " final batch without its service")
		return nil
	}
	r.ev.add(r.name + " final batch written")
	return nil
}

var _ sinks.Starter = (*serviceSink)(nil)

func TestRunSinksStartsServicesFirstAndStopsThemLast(t *testing.T) {
	ev := &eventLog{}
	svc := &serviceSink{ev: ev, started: make(chan struct{})}
	plain := &serviceSink{ev: &eventLog{}, started: make(chan struct{})} // a second sink, no service wait
	built := []builtSink{
		{name: "strategy", sink: svc, rt: &fakeRuntime{ev: ev, name: "strategy runtime", svc: svc}},
		{name: "cache", sink: plainSink{plain}, rt: &fakeRuntime{ev: &eventLog{}, name: "cache runtime"}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runSinks(ctx, built) }()
	testkit.Eventually(t, 5*time.Second, "the runtime consuming", func() bool {
		return slices.Contains(ev.list(), "strategy runtime consuming")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runSinks: %v", err)
	}
	want := []string{"service run", "service serving", "strategy runtime consuming", "strategy runtime final batch written", "service stopped"}
	if got := ev.list(); !slices.Equal(got, want) {
		t.Fatalf("order:\n got  %q\n want %q", got, want)
	}
}

// plainSink hides serviceSink's methods but the Sink ones: no service.
type plainSink struct{ s *serviceSink }

func (p plainSink) Connect(ctx context.Context) error { return p.s.Connect(ctx) }
func (p plainSink) WriteBatch(ctx context.Context, b []tick.Tick) error {
	return p.s.WriteBatch(ctx, b)
}
func (p plainSink) Close(ctx context.Context) error { return p.s.Close(ctx) }

func TestRunSinksFailureStopsEverything(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		built func(ev *eventLog) []builtSink
	}{
		{"a service fails to start", func(ev *eventLog) []builtSink {
			svc := &serviceSink{ev: ev, started: make(chan struct{}), fail: boom}
			return []builtSink{{name: "strategy", sink: svc, rt: &fakeRuntime{ev: ev, name: "strategy runtime", svc: svc}}}
		}},
		{"a runtime fails", func(ev *eventLog) []builtSink {
			svc := &serviceSink{ev: ev, started: make(chan struct{})}
			return []builtSink{
				{name: "strategy", sink: svc, rt: &fakeRuntime{ev: ev, name: "strategy runtime", svc: svc}},
				{name: "store", sink: plainSink{&serviceSink{}}, rt: &fakeRuntime{ev: ev, name: "store runtime", err: boom}},
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &eventLog{}
			err := runSinks(context.Background(), tc.built(ev))
			if !errors.Is(err, boom) {
				t.Fatalf("runSinks = %v, want %v", err, boom)
			}
			for _, e := range ev.list() {
				if e == "strategy runtime started before its service served" || e == "strategy runtime final batch without its service" {
					t.Errorf("order broken: %q (all: %q)", e, ev.list())
				}
			}
		})
	}
}
