package wsfeed

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/clock"
)

// Rotation is make-before-break. When a connection reaches MaxLifetime, or
// the server announces it will close it (Binance serverShutdown, OKX
// 64008, Kraken maintenance), the shard dials a new connection and
// subscribes it while the old one keeps reading. Both hand their records
// to the shard's duplicate filter (dedup.go), which lets each through
// once, in order. The old connection is closed only once the new one has
// delivered: when it has delivered (or had dropped as a duplicate) a
// record of every pair the old one carried, or Overlap after its first
// record at the latest. (A shard so quiet that neither connection
// delivers anything for Overlap hands over then: the old one has nothing
// the new one would miss.) A new connection that fails (the dial, no data
// within Overlap while the old one had some, or it ends during the
// overlap) is counted in
// rotations_total{result="failed"} and closed; the old one stays, as it
// would without rotations, until its hard end (the exchange's cut-off), and
// the rotation is tried again after a backoff meanwhile.

// errNotDelivering ends a rotation's new connection that sent no data
// within Overlap.
var errNotDelivering = errors.New("new connection delivered nothing within the rotation overlap")

// session is one WebSocket connection of a shard.
type session struct {
	c    *conn
	n    int // the shard's session number, for logs
	ws   *websocket.Conn
	msgs *Pacer
	ctx  context.Context
	stop context.CancelCauseFunc
	done chan ending // receives serve's ending, once

	// rotate carries a rotation this connection asks for (its lifetime,
	// the server's notice); one is enough while it waits.
	rotate chan string

	// Guarded by c.mu:
	seen       map[string]struct{} // pairs it delivered a record of (or a duplicate)
	records    int                 // records it delivered (or had dropped as duplicates)
	delivered  bool
	first      chan struct{} // closed at its first record
	progress   chan struct{} // poked when it sees a pair for the first time
	closedAt   int64         // clock Unix ns when it closed; 0 while open
	overlapped bool          // it ran beside another session of the shard

	seqs map[string]seqState // the read loop's only
}

// open starts serving a dialled connection.
func (c *conn) open(ctx context.Context, ws *websocket.Conn, msgs *Pacer) *session {
	c.seq++
	s := &session{
		c: c, n: c.seq, ws: ws, msgs: msgs,
		done:     make(chan ending, 1),
		rotate:   make(chan string, 1),
		seen:     map[string]struct{}{},
		first:    make(chan struct{}),
		progress: make(chan struct{}, 1),
	}
	s.ctx, s.stop = context.WithCancelCause(ctx)
	go func() { s.done <- c.serve(ctx, s) }()
	return s
}

// ask requests a rotation, unless one is requested already.
func (s *session) ask(why string) {
	select {
	case s.rotate <- why:
	default:
	}
}

// saw notes a record of symbol from s, delivered or dropped as a
// duplicate: either proves s delivers that pair. The caller holds c.mu.
func (s *session) saw(symbol string) {
	s.records++
	if !s.delivered {
		s.delivered = true
		close(s.first)
	}
	if _, ok := s.seen[symbol]; !ok {
		s.seen[symbol] = struct{}{}
		select {
		case s.progress <- struct{}{}:
		default:
		}
	}
}

// hasDelivered reports whether s delivered a record.
func (s *session) hasDelivered() bool {
	select {
	case <-s.first:
		return true
	default:
		return false
	}
}

// caughtUp reports whether next has seen every pair old has.
func (c *conn) caughtUp(old, next *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for sym := range old.seen {
		if _, ok := next.seen[sym]; !ok {
			return false
		}
	}
	return true
}

// hold serves cur, rotating it whenever it asks, until the connection
// current at the time ends by itself (or ctx ends); it returns that
// connection's ending.
func (c *conn) hold(ctx context.Context, log *slog.Logger, cur *session) ending {
	f := c.f
	var (
		retry    clock.Timer
		retryC   <-chan time.Time
		why      string
		failures int
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case end := <-cur.done:
			return end
		case why = <-cur.rotate:
			if retryC != nil {
				continue // a retry is scheduled already
			}
		case <-retryC:
			retryC = nil
		}
		next, oldEnd := c.rotateTo(ctx, log, cur, why)
		switch {
		case oldEnd != nil && (oldEnd.fatal != nil || ctx.Err() != nil):
			if next != nil {
				next.stop(nil)
				<-next.done
			}
			return *oldEnd
		case oldEnd != nil && next == nil:
			return *oldEnd
		case oldEnd != nil:
			// The old connection ended while the new one came up: a
			// reconnect, whose gap covers the pairs the new one has not
			// delivered yet.
			f.m.Reconnects.WithLabelValues(f.o.Name, oldEnd.reason).Inc()
			f.rotations.WithLabelValues(f.o.Name, why, "old_ended_first").Inc()
			c.mu.Lock()
			c.dropped(oldEnd.reason, next)
			c.mu.Unlock()
			log.Info(f.o.Name+": connection ended during a rotation", "reason", oldEnd.reason, "err", oldEnd.err)
			cur, failures = next, 0
		case next != nil:
			cur, failures = next, 0
		default:
			if ctx.Err() != nil {
				return <-cur.done
			}
			delay := f.o.Backoff.Delay(failures)
			failures++
			if retry != nil {
				retry.Stop()
			}
			retry = f.o.Clock.NewTimer(delay)
			retryC = retry.C()
			log.Warn(f.o.Name+": rotation failed; the old connection stays", "reason", why, "retry_in", delay)
		}
	}
}

// rotateTo dials a successor to old and, once it delivers, closes old. It
// returns the successor when it took over, or nil when it failed (old
// serving on). oldEnd is set when old ended by itself meanwhile, or the
// successor ended with a fatal error.
func (c *conn) rotateTo(ctx context.Context, log *slog.Logger, old *session, why string) (next *session, oldEnd *ending) {
	f := c.f
	name := f.o.Name
	failed := func(stage string, err error) {
		f.rotations.WithLabelValues(name, why, "failed").Inc()
		log.Warn(name+": rotation: new connection failed", "reason", why, "stage", stage, "err", err)
	}
	log.Info(name+": rotating connection", "reason", why, "session", old.n)
	c.mu.Lock()
	before := old.records
	c.mu.Unlock()
	if f.connects.Wait(ctx) != nil {
		return nil, nil
	}
	ws, msgs, _, err := c.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.dialErrors.Inc()
			failed("dial", err)
		}
		return nil, nil
	}
	next = c.open(ctx, ws, msgs)
	c.mu.Lock()
	old.overlapped, next.overlapped = true, true
	c.mu.Unlock()
	up := f.o.Clock.NewTimer(f.o.Overlap)
	defer up.Stop()
	select {
	case <-next.first:
	case end := <-next.done:
		if end.fatal != nil {
			old.stop(nil)
			<-old.done
			return nil, &end
		}
		if ctx.Err() == nil {
			failed("before its first record", end.err)
		}
		return nil, nil
	case <-up.C():
		c.mu.Lock()
		quiet := old.records == before
		c.mu.Unlock()
		if !quiet {
			// The old connection delivered meanwhile; the new one did not.
			next.stop(errNotDelivering)
			<-next.done
			failed("first record", errNotDelivering)
			return nil, nil
		}
		// Nothing to deliver on either (quiet pairs): the old connection
		// has nothing the new one would miss, and the new one is up.
	case end := <-old.done:
		return next, &end
	}
	overlap := f.o.Clock.NewTimer(f.o.Overlap)
	defer overlap.Stop()
wait:
	for next.hasDelivered() && !c.caughtUp(old, next) {
		select {
		case <-next.progress:
		case <-overlap.C():
			break wait
		case end := <-next.done:
			if end.fatal != nil {
				old.stop(nil)
				<-old.done
				return nil, &end
			}
			failed("overlap", end.err)
			return nil, nil
		case end := <-old.done:
			return next, &end
		}
	}
	old.stop(&rotated{why})
	end := <-old.done
	if end.fatal != nil {
		next.stop(nil)
		<-next.done
		return nil, &end
	}
	f.m.Reconnects.WithLabelValues(name, why).Inc()
	f.rotations.WithLabelValues(name, why, "done").Inc()
	log.Info(name+": rotated connection", "reason", why, "old", old.n, "new", next.n, "old_ticks", end.ticks)
	return next, nil
}
