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
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/instrument"
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
	// Resolver gives each tick its normalized instrument (Base, Quote)
	// from its exchange and native symbol. It answers first with what it
	// was told (the exchanges' listings); nil reads the symbol form alone.
	Resolver *instrument.Resolver
	Clock    clock.Clock
	Logger   *slog.Logger
	Metrics  prometheus.Registerer
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
	logIns Sometimes
	retry  backoff.Policy

	mu   sync.Mutex
	lost map[string]int // by exchange

	// With an acker: ticks handed over and not yet acknowledged or
	// refused, by exchange; ticks the broker refused, waiting to be
	// produced again, oldest first; and whether Run has settled the
	// account (late outcomes are then ignored, not counted twice).
	inflight map[string]int
	refused  []tick.Tick
	refusedC chan struct{} // signalled when refused grows
	settled  bool
	refusals int // consecutive refusals since the last ack, for backoff
}

// flusher is the optional part of a Publisher that waits for every record
// it accepted to be acknowledged; the Pump calls it at the end of a drain so
// "produced" means acknowledged before Run returns.
type flusher interface {
	Flush(ctx context.Context) error
}

// acker is the optional part of a Publisher that reports each tick's fate
// (*bus.Producer has it). ProduceNotify returns nil once the tick is handed
// over and then calls done exactly once: nil when the broker acknowledged
// it, an error when the client gave up on it. A non-nil return means the
// tick was not taken and done is never called. done must not block.
//
// With an acker the Pump counts acknowledged ticks, produces refused ones
// again, and counts as unproduced only what was never acknowledged.
type acker interface {
	ProduceNotify(ctx context.Context, t *tick.Tick, done func(error)) error
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
		inflight: map[string]int{}, refusedC: make(chan struct{}, 1),
		logErr: Sometimes{Every: 5 * time.Second, Clock: o.Clock},
		logIns: Sometimes{Every: 10 * time.Second, Clock: o.Clock},
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
	rctx, stopRetrying := context.WithCancel(pctx)
	retried := make(chan struct{})
	go func() { defer close(retried); p.retryLoop(rctx, pctx) }()
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
	stopRetrying()
	<-retried

	var flushErr error
	_, acks := p.pub.(acker)
	if f, ok := p.pub.(flusher); ok && pctx.Err() == nil {
		// Flush until nothing refused is left to produce again: each
		// round's refusals come back through done before Flush returns.
		for {
			if err := f.Flush(pctx); err != nil {
				flushErr = fmt.Errorf("ingest pump: flush: %w", err)
				break
			}
			if !acks || !p.retryRefused(pctx) {
				break
			}
		}
	}
	if acks {
		p.settle()
	} else if r, ok := p.pub.(deliveryReporter); ok {
		if err := r.Err(); err != nil {
			flushErr = errors.Join(flushErr, fmt.Errorf("ingest pump: producer failed to deliver accepted ticks: %w", err))
		}
	}
	if n, detail := p.lostSummary(); n > 0 {
		p.o.Logger.Error("ingest: accepted ticks never acknowledged by the broker",
			"count", n, "by_exchange", detail, "deadline", p.o.DrainTimeout)
		return errors.Join(fmt.Errorf("%w: %d accepted ticks not acknowledged within %s (%s)",
			ErrDrainIncomplete, n, p.o.DrainTimeout, detail), flushErr)
	}
	return flushErr
}

// retryLoop produces refused ticks again while Run runs, until rctx ends.
func (p *Pump) retryLoop(rctx, pctx context.Context) {
	for {
		select {
		case <-rctx.Done():
			return
		case <-p.refusedC:
		}
		p.retryRefused(pctx)
	}
}

// retryRefused produces the ticks the broker refused so far again, oldest
// first, after a backoff that grows while refusals keep coming without an
// ack in between. It reports whether there were any.
func (p *Pump) retryRefused(ctx context.Context) bool {
	p.mu.Lock()
	batch, n := p.refused, p.refusals
	p.refused = nil
	p.mu.Unlock()
	if len(batch) == 0 {
		return false
	}
	if n > 0 && clock.Sleep(ctx, p.o.Clock, p.retry.Delay(n-1)) != nil {
		p.mu.Lock()
		p.refused = append(batch, p.refused...)
		p.mu.Unlock()
		return true
	}
	for i := range batch {
		p.m.Redelivered.WithLabelValues(batch[i].Exchange).Inc()
		if !p.produce(ctx, &batch[i], p.series(&batch[i]), false) {
			p.lose(&batch[i])
		}
	}
	return true
}

// pairSeries are one pair's per-tick counters, looked up once: a
// WithLabelValues call hashes its labels and takes a lock, and the pump
// counted three of them per tick (4 % of the pipeline's CPU at 77 k
// ticks/s, all five sinks on).
type pairSeries struct {
	handed, acked, refused prometheus.Counter
}

func (p *Pump) series(t *tick.Tick) *pairSeries {
	return &pairSeries{
		handed:  p.m.Handed.WithLabelValues(t.Exchange, t.Symbol),
		acked:   p.m.Acked.WithLabelValues(t.Exchange, t.Symbol),
		refused: p.m.Refused.WithLabelValues(t.Exchange, t.Symbol),
	}
}

// outcome is an acker's report on one handed-over tick.
func (p *Pump) outcome(t *tick.Tick, s *pairSeries, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.settled {
		return
	}
	p.inflight[t.Exchange]--
	switch {
	case err == nil:
		p.refusals = 0
		s.acked.Inc()
		if t.ReceivedAt > 0 {
			p.m.AckLatency.Observe(float64(p.o.Clock.Now().UnixMicro()-t.ReceivedAt) / 1e6)
		}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgoClientClosed):
		// The drain deadline or the producer closing: not retried.
		p.loseLocked(t)
	default:
		// The broker refused it (or the client gave up): produce it again.
		p.refusals++
		s.refused.Inc()
		p.refused = append(p.refused, *t)
		select {
		case p.refusedC <- struct{}{}:
		default:
		}
	}
}

// settle counts what is still unacknowledged as unproduced and ignores any
// outcome reported later.
func (p *Pump) settle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.refused {
		p.loseLocked(&p.refused[i])
	}
	p.refused = nil
	for ex, n := range p.inflight {
		if n > 0 {
			p.m.Unproduced.WithLabelValues(ex).Add(float64(n))
			if p.lost == nil {
				p.lost = map[string]int{}
			}
			p.lost[ex] += n
		}
	}
	clear(p.inflight)
	p.settled = true
}

// work produces one worker's ticks in order, each with its instrument
// filled in. Once pctx is cancelled (the drain deadline) it counts what is
// left instead.
func (p *Pump) work(pctx context.Context, in <-chan tick.Tick) {
	var cur tick.Tick // one escape per worker, not per tick
	ins := instruments{r: p.o.Resolver}
	// A pair always goes to the same worker, so its counters can live in
	// a map only this goroutine touches.
	series := map[tick.Pair]*pairSeries{}
	for t := range in {
		cur = t
		p.fillInstrument(&ins, &cur)
		s, ok := series[cur.Pair()]
		if !ok {
			s = p.series(&cur)
			series[cur.Pair()] = s
		}
		if pctx.Err() != nil || !p.produce(pctx, &cur, s, true) {
			p.lose(&cur)
		}
	}
}

// produce hands t to the publisher, retrying with backoff while it refuses
// to take it. first is false when t is a refused tick being produced
// again, so that handed counts each tick once.
func (p *Pump) produce(ctx context.Context, t *tick.Tick, s *pairSeries, first bool) bool {
	ack, acks := p.pub.(acker)
	for attempt := 0; ; attempt++ {
		var err error
		if acks {
			tc := new(tick.Tick)
			*tc = *t
			p.mu.Lock()
			p.inflight[t.Exchange]++
			p.mu.Unlock()
			err = ack.ProduceNotify(ctx, tc, func(err error) { p.outcome(tc, s, err) })
			if err != nil {
				p.mu.Lock()
				p.inflight[t.Exchange]--
				p.mu.Unlock()
			}
		} else {
			err = p.pub.Produce(ctx, t)
		}
		if err == nil {
			if first {
				s.handed.Inc()
			}
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

// instruments is one worker's memory of which instrument each pair is.
// Every tick, from every source, passes a worker on its way to the bus, so
// this is the one place ticks get their Base and Quote; the exchange
// packages only decode. A worker owns its instruments, so no lock: a pair
// always goes to the same worker. What the Resolver is told later (its
// generation moves) drops the memory.
type instruments struct {
	r     *instrument.Resolver
	gen   uint64
	known map[tick.Pair]instrument.Instrument // zero: did not resolve
}

// maxInstruments bounds one worker's memory; past it, symbols are resolved
// on every tick (correct, only slower).
const maxInstruments = 4096

// fillInstrument sets t's Base and Quote unless its source already did.
// A symbol that does not resolve leaves them empty: the tick is still
// published under its native symbol, counted in
// tickflow_ingest_ticks_unresolved_total and logged at a bounded rate.
func (p *Pump) fillInstrument(c *instruments, t *tick.Tick) {
	if t.Base != "" || t.Quote != "" {
		return
	}
	if g := c.r.Generation(); g != c.gen || c.known == nil {
		c.gen = g
		c.known = map[tick.Pair]instrument.Instrument{}
	}
	in, ok := c.known[t.Pair()]
	if !ok {
		var err error
		if in, err = c.r.Resolve(t.Exchange, t.Symbol); err != nil {
			in = instrument.Instrument{}
			if ok, suppressed := p.logIns.Allow(); ok {
				p.o.Logger.Warn("ingest: symbol has no normalized instrument; published without base and quote",
					"exchange", t.Exchange, "symbol", t.Symbol, "err", err, "suppressed", suppressed)
			}
		}
		if len(c.known) < maxInstruments {
			c.known[t.Pair()] = in
		}
	}
	if in.IsZero() {
		p.m.Unresolved.WithLabelValues(t.Exchange).Inc()
		return
	}
	t.Base, t.Quote = in.Base, in.Quote
}

func (p *Pump) lose(t *tick.Tick) {
	p.mu.Lock()
	p.loseLocked(t)
	p.mu.Unlock()
}

func (p *Pump) loseLocked(t *tick.Tick) {
	p.m.Unproduced.WithLabelValues(t.Exchange).Inc()
	if p.lost == nil {
		p.lost = map[string]int{}
	}
	p.lost[t.Exchange]++
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

// kgoClientClosed is the error a closing producer fails records with.
var kgoClientClosed = kgo.ErrClientClosed

// workerBuffer is how many ticks may wait for each worker beyond the queue.
// Small, so the queue stays the one place where backpressure shows.
const workerBuffer = 4
