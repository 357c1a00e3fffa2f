package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/tick"
)

// ErrDrainIncomplete is returned (wrapped, with the count) by Pump.Run when
// the drain deadline passed before every accepted tick was produced.
var ErrDrainIncomplete = errors.New("ingest: shutdown drain incomplete")

// PumpOptions configure a Pump. The zero value is usable.
type PumpOptions struct {
	// Workers bounds concurrent Produce calls (default 8). Ticks of one
	// pair always go to the same worker, one at a time, so they reach the
	// producer in the order they were queued.
	Workers int
	// DrainTimeout bounds how long Run keeps producing queued ticks after
	// its context ends (default 10 s).
	DrainTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts when Produce
	// fails (defaults 100 ms and 5 s).
	RetryMin, RetryMax time.Duration
	Clock              clock.Clock
	Logger             *slog.Logger
	Metrics            prometheus.Registerer
}

func (o *PumpOptions) setDefaults() error {
	if o.Workers == 0 {
		o.Workers = 8
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.RetryMin == 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 5 * time.Second
	}
	o.Clock = clock.OrReal(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Workers < 0:
		return fmt.Errorf("workers must be > 0, got %d", o.Workers)
	case o.DrainTimeout < 0:
		return fmt.Errorf("drain timeout must be > 0, got %s", o.DrainTimeout)
	case o.RetryMin < 0 || o.RetryMax < o.RetryMin:
		return fmt.Errorf("retry backoff must satisfy 0 < min <= max, got %s..%s", o.RetryMin, o.RetryMax)
	}
	return nil
}

// Pump moves ticks from a Queue to a Publisher.
type Pump struct {
	q      *Queue
	pub    Publisher
	o      PumpOptions
	m      *Metrics
	logErr Sometimes
	retry  backoff.Policy

	mu   sync.Mutex
	lost map[string]int // by exchange
}

// flusher is the optional part of a Publisher that waits for every record
// it accepted to be acknowledged; the Pump calls it at the end of a drain so
// "produced" means acknowledged before Run returns.
type flusher interface {
	Flush(ctx context.Context) error
}

// deliveryReporter is the optional part of a Publisher whose Produce returns
// once a record is buffered: Err reports a record it took and then failed
// to deliver (*bus.Producer logs and counts each one). Such a tick was
// counted as produced but is lost, so the drain is not clean.
type deliveryReporter interface {
	Err() error
}

// NewPump returns a pump from q to pub.
func NewPump(q *Queue, pub Publisher, o PumpOptions) (*Pump, error) {
	if q == nil || pub == nil {
		return nil, errors.New("ingest pump: needs a queue and a publisher")
	}
	if err := o.setDefaults(); err != nil {
		return nil, fmt.Errorf("ingest pump: %w", err)
	}
	m, err := NewMetrics(o.Metrics)
	if err != nil {
		return nil, err
	}
	return &Pump{
		q: q, pub: pub, o: o, m: m,
		logErr: Sometimes{Every: 5 * time.Second, Clock: o.Clock},
		// No jitter: the pump retries one producer it owns, so there is no
		// herd to spread.
		retry: backoff.Policy{Min: o.RetryMin, Max: o.RetryMax, NoJitter: true},
	}, nil
}

// Run produces queued ticks until ctx ends, then closes the queue and keeps
// producing what it holds for up to DrainTimeout, flushing the publisher if
// it can. It returns nil when every accepted tick was produced, and an error
// wrapping ErrDrainIncomplete (with the count) when some were not, or
// reporting the publisher's delivery failure when it took some and then
// failed to deliver them. The
// publisher must stay open until Run returns.
func (p *Pump) Run(ctx context.Context) error {
	// Produce calls outlive ctx: a tick the queue accepted must still reach
	// the producer during the drain. Only the drain deadline cancels them.
	pctx, stopProducing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProducing()
	drained := make(chan struct{})
	defer close(drained)
	go func() {
		select {
		case <-ctx.Done():
		case <-drained:
			return
		}
		// Stop accepting at once, even while the dispatcher waits on a
		// busy worker: the sources are stopping and must not block.
		p.q.Close()
		deadline := p.o.Clock.NewTimer(p.o.DrainTimeout)
		select {
		case <-deadline.C():
			stopProducing()
		case <-drained:
			deadline.Stop()
		}
	}()

	workers := make([]chan tick.Tick, p.o.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan tick.Tick, workerBuffer)
		wg.Go(func() { p.work(pctx, workers[i]) })
	}
	dispatch := func(t tick.Tick) {
		select {
		case workers[pairHash(&t)%uint32(len(workers))] <- t:
		case <-pctx.Done():
			p.lose(&t)
		}
	}

running:
	for {
		select {
		case t := <-p.q.ch:
			dispatch(t)
		case <-ctx.Done():
			break running
		}
	}

	p.q.Close() // usually already closed by the watcher; wait for it
	queued := p.q.Len()
	if queued > 0 {
		p.o.Logger.Info("ingest: producing queued ticks before shutdown", "queued", queued, "deadline", p.o.DrainTimeout)
	}
	for len(p.q.ch) > 0 {
		t := <-p.q.ch
		dispatch(t)
	}
	for _, w := range workers {
		close(w)
	}
	wg.Wait()

	var flushErr error
	if f, ok := p.pub.(flusher); ok && pctx.Err() == nil {
		if err := f.Flush(pctx); err != nil {
			flushErr = fmt.Errorf("ingest pump: flush: %w", err)
		}
	}
	if r, ok := p.pub.(deliveryReporter); ok {
		if err := r.Err(); err != nil {
			flushErr = errors.Join(flushErr, fmt.Errorf("ingest pump: producer failed to deliver accepted ticks: %w", err))
		}
	}
	if n, detail := p.lostSummary(); n > 0 {
		p.o.Logger.Error("ingest: accepted ticks not produced before the drain deadline",
			"count", n, "by_exchange", detail, "deadline", p.o.DrainTimeout)
		return errors.Join(fmt.Errorf("%w: %d accepted ticks not produced within %s (%s)",
			ErrDrainIncomplete, n, p.o.DrainTimeout, detail), flushErr)
	}
	return flushErr
}

// work produces one worker's ticks in order. Once pctx is cancelled (the
// drain deadline) it counts what is left instead.
func (p *Pump) work(pctx context.Context, in <-chan tick.Tick) {
	var cur tick.Tick // one escape per worker, not per tick
	for t := range in {
		cur = t
		if pctx.Err() != nil || !p.produce(pctx, &cur) {
			p.lose(&cur)
		}
	}
}

func (p *Pump) produce(ctx context.Context, t *tick.Tick) bool {
	for attempt := 0; ; attempt++ {
		err := p.pub.Produce(ctx, t)
		if err == nil {
			p.m.Produced.WithLabelValues(t.Exchange, t.Symbol).Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.m.ProduceErrors.WithLabelValues(t.Exchange).Inc()
		wait := p.retry.Delay(attempt)
		if ok, suppressed := p.logErr.Allow(); ok {
			p.o.Logger.Warn("ingest: produce failed; retrying", "key", t.Key(), "attempt", attempt+1,
				"retry_in", wait, "err", err, "suppressed", suppressed)
		}
		if clock.Sleep(ctx, p.o.Clock, wait) != nil {
			return false
		}
	}
}

func (p *Pump) lose(t *tick.Tick) {
	p.m.Unproduced.WithLabelValues(t.Exchange).Inc()
	p.mu.Lock()
	if p.lost == nil {
		p.lost = map[string]int{}
	}
	p.lost[t.Exchange]++
	p.mu.Unlock()
}

func (p *Pump) lostSummary() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	parts := make([]string, 0, len(p.lost))
	for ex, n := range p.lost {
		total += n
		parts = append(parts, fmt.Sprintf("%s=%d", ex, n))
	}
	sort.Strings(parts)
	return total, strings.Join(parts, " ")
}

// pairHash is FNV-1a over "exchange:symbol", without building the string.
func pairHash(t *tick.Tick) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(t.Exchange); i++ {
		h = (h ^ uint32(t.Exchange[i])) * 16777619
	}
	h = (h ^ ':') * 16777619
	for i := 0; i < len(t.Symbol); i++ {
		h = (h ^ uint32(t.Symbol[i])) * 16777619
	}
	return h
}

// workerBuffer is how many ticks may wait for each worker beyond the queue.
// Small, so the queue stays the one place where backpressure shows.
const workerBuffer = 4
