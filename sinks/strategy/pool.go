package strategy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickflow/tickflow/clock"
)

// The worker pool runs Execute off the consuming goroutine, boundedly:
//
//   - a fixed number of workers, never more, however many triggers arrive
//     (the seed spawned a task per trigger);
//   - a bounded queue in front of them; a trigger that finds it full waits
//     for room (counted in tickflow_strategy_trigger_waits_total), but only
//     until one timeout has passed since the batch first had to wait; from
//     then on every trigger of the batch that finds the queue full is
//     dropped (triggers_dropped_total{reason="queue_full"}). Slow
//     strategies thus slow a batch by about one timeout, not by one
//     timeout per trigger;
//   - each Execute gets a context cancelled after the timeout; an overrun
//     is reported as timed out at once, while its worker stays taken until
//     Execute actually returns, so a misbehaving strategy shrinks the pool
//     rather than growing the goroutine count;
//   - at the end of a batch the sink waits for the batch's jobs, at most
//     one timeout past the last submission for jobs not yet started;
//     those are abandoned (reason="abandoned").
//
// Consumption therefore never blocks for longer than about two timeouts
// per batch, and signals of dropped triggers are lost (counted), which is
// the one way a replay can decide differently from the original run.

var (
	errTimeout   = errors.New("execute timed out")
	errDropped   = errors.New("trigger dropped: worker queue full")
	errAbandoned = errors.New("trigger abandoned: not started in time")
)

const (
	jobQueued int32 = iota
	jobRunning
	jobAbandoned
)

type job struct {
	inst  *instance
	tr    Trigger
	state atomic.Int32
	once  sync.Once
	done  chan struct{}
	dec   *Decision
	err   error
}

func (j *job) finish(dec *Decision, err error) {
	j.once.Do(func() {
		j.dec, j.err = dec, err
		close(j.done)
	})
}

type pool struct {
	workers int
	jobs    chan *job
	clock   clock.Clock
	timeout time.Duration
	m       *metrics
	log     *slog.Logger
	running atomic.Bool
	busy    atomic.Int64
	// started is closed once run serves jobs (Sink.Started).
	started     chan struct{}
	startedOnce sync.Once
}

func newPool(cfg *Config, clk clock.Clock, m *metrics, log *slog.Logger) *pool {
	return &pool{workers: cfg.Workers, jobs: make(chan *job, cfg.Queue), clock: clk, timeout: cfg.Timeout, m: m, log: log,
		started: make(chan struct{})}
}

// Started is closed once the worker pool serves jobs: a batch written
// before then could only fail, so the host starts the sink's runtime after
// it (sinks.Starter).
func (s *Sink) Started() <-chan struct{} { return s.pool.started }

// run serves jobs with the workers until ctx ends.
func (p *pool) run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("strategy: worker pool already running")
	}
	defer p.running.Store(false)
	var wg sync.WaitGroup
	for i := 0; i < p.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-p.jobs:
					p.m.queue.Set(float64(len(p.jobs)))
					p.exec(ctx, j)
				}
			}
		}()
	}
	// Queued jobs wait in p.jobs for the workers just started.
	p.startedOnce.Do(func() { close(p.started) })
	<-ctx.Done()
	// A worker stuck in an Execute that ignores its context must not hold
	// up shutdown for longer than one more timeout.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	t := p.clock.NewTimer(p.timeout)
	select {
	case <-stopped:
		t.Stop()
	case <-t.C():
		p.log.Warn("strategy: an Execute ignored cancellation; leaving it behind", "busy", p.busy.Load())
	}
	// Jobs still queued will never run; their batch is waiting on them.
	for {
		select {
		case j := <-p.jobs:
			if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
				j.finish(nil, fmt.Errorf("%w: shutting down", errAbandoned))
			}
		default:
			return nil
		}
	}
}

func (p *pool) exec(ctx context.Context, j *job) {
	if !j.state.CompareAndSwap(jobQueued, jobRunning) {
		return // abandoned while queued
	}
	p.busy.Add(1)
	defer p.busy.Add(-1)
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := p.clock.NewTimer(p.timeout)
	stop := make(chan struct{})
	go func() {
		select {
		case <-t.C():
			// Report before cancelling, so the batch sees a timeout
			// and not the context error Execute returns for it.
			p.m.timeouts.Inc()
			j.finish(nil, errTimeout)
			cancel()
		case <-stop:
			t.Stop()
		}
	}()
	dec, err := j.inst.strategy.Execute(jctx, j.tr)
	close(stop)
	if err == nil && jctx.Err() != nil {
		err = errTimeout
	}
	j.finish(dec, err)
}

// jobBatch submits one batch's jobs and waits for them.
type jobBatch struct {
	p      *pool
	jobs   []*job
	budget clock.Timer // started by the first wait for room
	stuck  bool        // the budget is spent: drop what does not fit
}

// submit queues a trigger, waiting a bounded time for room.
func (b *jobBatch) submit(ctx context.Context, inst *instance, tr Trigger) {
	j := &job{inst: inst, tr: tr, done: make(chan struct{})}
	b.jobs = append(b.jobs, j)
	p := b.p
	select {
	case p.jobs <- j:
		p.m.queue.Set(float64(len(p.jobs)))
		return
	default:
	}
	if b.stuck {
		b.drop(j, errDropped)
		return
	}
	p.m.waits.Inc()
	if b.budget == nil {
		b.budget = p.clock.NewTimer(p.timeout)
	}
	select {
	case p.jobs <- j:
	case <-b.budget.C():
		b.stuck = true
		b.drop(j, errDropped)
	case <-ctx.Done():
		j.state.Store(jobAbandoned)
		j.finish(nil, ctx.Err())
	}
}

// drop gives up on a job that never got into the queue.
func (b *jobBatch) drop(j *job, err error) {
	j.state.Store(jobAbandoned)
	b.p.m.dropped.WithLabelValues("queue_full").Inc()
	j.finish(nil, err)
}

// wait returns once every job has finished or been abandoned.
func (b *jobBatch) wait(ctx context.Context) {
	if b.budget != nil && !b.stuck {
		b.budget.Stop()
	}
	if len(b.jobs) == 0 {
		return
	}
	t := b.p.clock.NewTimer(b.p.timeout)
	defer t.Stop()
	expired := false
	for _, j := range b.jobs {
		if !expired {
			select {
			case <-j.done:
				continue
			case <-t.C():
				expired = true
			case <-ctx.Done():
				expired = true
			}
		}
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			b.p.m.dropped.WithLabelValues("abandoned").Inc()
			j.finish(nil, errAbandoned)
			continue
		}
		// Running: its own timeout finishes it soon.
		<-j.done
	}
}
