package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/tick"
)

// ErrFull is returned by EnqueueWithin when the queue stayed full for the
// whole wait: the tick was dropped and counted.
var ErrFull = errors.New("ingest: queue full")

// ErrClosed is returned by Enqueue once the queue is closed: the tick was
// not accepted.
var ErrClosed = errors.New("ingest: queue closed")

// Queue is the bounded hand-off between sources' read loops and the Pump.
// Enqueue blocks while the queue is full, so a stalled producer slows the
// sources down instead of losing ticks; how long they wait is measured and
// the wait is logged at a bounded rate.
type Queue struct {
	ch      chan tick.Tick
	log     *slog.Logger
	m       *Metrics
	logFull Sometimes
	logDrop Sometimes

	// mu is held shared by each Enqueue and exclusively by Close, so once
	// Close returns no Enqueue can still be sending: everything accepted is
	// in ch for the Pump to drain.
	mu        sync.RWMutex
	closed    bool
	closing   chan struct{}
	closeOnce sync.Once
}

var _ Enqueuer = (*Queue)(nil)

// NewQueue returns a queue holding up to size ticks. logger may be nil
// (discard); metrics go to reg (none when nil).
func NewQueue(size int, logger *slog.Logger, reg prometheus.Registerer) (*Queue, error) {
	if size <= 0 {
		return nil, fmt.Errorf("ingest queue: size must be > 0, got %d", size)
	}
	m, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m.QueueCapacity.Add(float64(size))
	q := &Queue{
		ch:      make(chan tick.Tick, size),
		log:     logger,
		m:       m,
		logFull: Sometimes{Every: 10 * time.Second},
		logDrop: Sometimes{Every: 10 * time.Second},
		closing: make(chan struct{}),
	}
	m.QueueDepth.add(q)
	return q, nil
}

// Enqueue copies t into the queue, blocking while the queue is full. It
// returns nil once the tick is accepted, ctx's error if ctx ended first, or
// ErrClosed after Close.
func (q *Queue) Enqueue(ctx context.Context, t *tick.Tick) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	select {
	case q.ch <- *t:
		q.m.Accepted.WithLabelValues(t.Exchange).Inc()
		return nil
	default:
	}
	err := q.wait(ctx, t)
	if err == nil {
		q.m.Accepted.WithLabelValues(t.Exchange).Inc()
	}
	return err
}

// EnqueueWithin is Enqueue for a source that cannot wait long: a live
// exchange connection that stops reading is cut off by the exchange, and
// then loses ticks nobody counts. It waits at most wait for room (not at
// all when wait <= 0), then drops the tick, counts it per pair
// (tickflow_ingest_dropped_total) and returns ErrFull.
func (q *Queue) EnqueueWithin(ctx context.Context, t *tick.Tick, wait time.Duration) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	select {
	case q.ch <- *t:
		q.m.Accepted.WithLabelValues(t.Exchange).Inc()
		return nil
	default:
	}
	if wait > 0 {
		wctx, cancel := context.WithTimeoutCause(ctx, wait, ErrFull)
		err := q.wait(wctx, t)
		cancel()
		if err == nil {
			q.m.Accepted.WithLabelValues(t.Exchange).Inc()
			return nil
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return err
		}
	}
	q.m.Dropped.WithLabelValues(t.Exchange, t.Symbol).Inc()
	if ok, suppressed := q.logDrop.Allow(); ok {
		q.log.Warn("ingest queue full: dropping ticks from a live source rather than stalling its connection",
			"exchange", t.Exchange, "symbol", t.Symbol, "capacity", cap(q.ch), "waited", wait, "suppressed", suppressed)
	}
	return ErrFull
}

func (q *Queue) wait(ctx context.Context, t *tick.Tick) error {
	start := time.Now()
	q.m.QueueWaiting.Inc()
	if ok, suppressed := q.logFull.Allow(); ok {
		q.log.Warn("ingest queue full: source blocked until the producer catches up",
			"exchange", t.Exchange, "capacity", cap(q.ch), "suppressed", suppressed)
	}
	var err error
	select {
	case q.ch <- *t:
	case <-ctx.Done():
		err = ctx.Err()
	case <-q.closing:
		err = ErrClosed
	}
	q.m.QueueWaiting.Dec()
	q.m.QueueBlocked.WithLabelValues(t.Exchange).Add(time.Since(start).Seconds())
	return err
}

// Len is the number of ticks waiting.
func (q *Queue) Len() int { return len(q.ch) }

// Cap is the queue's capacity.
func (q *Queue) Cap() int { return cap(q.ch) }

// Close stops accepting ticks; those already accepted stay for the Pump.
// It wakes blocked Enqueue calls (they return ErrClosed) and returns once
// none is still sending. Closing twice is harmless.
func (q *Queue) Close() {
	q.closeOnce.Do(func() { close(q.closing) })
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}
