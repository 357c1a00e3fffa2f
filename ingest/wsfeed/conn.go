package wsfeed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/tick"
)

// conn is one shard: a set of streams, on one connection at a time but
// while a rotation runs, when the old and the new connection both deliver
// (see rotate.go).
type conn struct {
	f       *Feed
	id      int
	streams []string
	url     string

	up      atomic.Bool
	lastErr atomic.Pointer[string]

	// mu is held while a connection hands on one frame's records, so the
	// two connections of a rotation interleave whole frames and the
	// filter's decision and the hand-off happen as one.
	mu    sync.Mutex
	gaps  gapTracker
	dedup dedup
	seq   int // sessions opened, for logs
}

// Why a connection ended: the reason label of reconnects_total.
var (
	errStale     = errors.New("stale")
	errSubscribe = errors.New("subscribe_failed")
)

// Reasons for a planned replacement.
const (
	reasonLifetime = "max_lifetime"
)

// rotated ends the old connection of a finished rotation; its name is the
// rotation's reason.
type rotated struct{ name string }

func (p *rotated) Error() string { return "replaced by a new connection (" + p.name + ")" }

// ending describes a finished connection.
type ending struct {
	reason string
	err    error
	ticks  int
	fatal  error // the source cannot go on (queue closed)
}

// run keeps the shard connected until ctx ends.
func (c *conn) run(ctx context.Context) error {
	f := c.f
	name := f.o.Name
	log := f.o.Logger.With("conn", c.id, "streams", len(c.streams))
	failures := 0
	for {
		if f.connects.Wait(ctx) != nil {
			return nil
		}
		ws, msgs, wait, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.dialErrors.Inc()
			c.setDown(err.Error())
			delay := max(wait, f.o.Backoff.Delay(failures))
			failures++
			log.Warn(name+": connect failed", "attempt", failures, "retry_in", delay, "err", err)
			if clock.Sleep(ctx, f.o.Clock, delay) != nil {
				return nil
			}
			continue
		}
		log.Info(name+": connected", "url", c.url)
		end := c.hold(ctx, log, c.open(ctx, ws, msgs))
		if end.fatal != nil {
			return end.fatal
		}
		if ctx.Err() != nil {
			return nil
		}
		f.m.Reconnects.WithLabelValues(name, end.reason).Inc()
		c.mu.Lock()
		c.dropped(end.reason, nil)
		c.mu.Unlock()
		c.setDown(fmt.Sprintf("%s: %v", end.reason, end.err))
		var delay time.Duration
		if end.ticks > 0 {
			// The connection worked: start the backoff over.
			delay = f.o.Backoff.Delay(0)
			failures = 1
		} else {
			delay = f.o.Backoff.Delay(failures)
			failures++
		}
		log.Info(name+": connection ended; reconnecting", "reason", end.reason, "err", end.err,
			"ticks", end.ticks, "retry_in", delay)
		if clock.Sleep(ctx, f.o.Clock, delay) != nil {
			return nil
		}
	}
}

func (c *conn) setDown(why string) {
	c.up.Store(false)
	c.lastErr.Store(&why)
}

// dial opens the connection and returns it with the pacer of its client
// messages. On a 429 or 418 (the rate-limit and ban answers) it also
// returns the server's Retry-After.
func (c *conn) dial(ctx context.Context) (*websocket.Conn, *Pacer, time.Duration, error) {
	f := c.f
	msgs := NewPacer(f.o.Clock, f.o.ClientMessages)
	dctx, cancel := context.WithTimeout(ctx, f.o.DialTimeout)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, c.url, &websocket.DialOptions{
		HTTPClient: f.o.HTTPClient,
		// The library answers each ping with a pong echoing its payload
		// while Read runs; this only keeps a ping flood from making us
		// break the exchange's client message rate. An unanswered ping is
		// harmless: exchanges wait a minute or more for the pong.
		OnPingReceived: func(context.Context, []byte) bool {
			if msgs.Allow() {
				return true
			}
			f.pingsDrop.Inc()
			return false
		},
	})
	if err != nil {
		var wait time.Duration
		if resp != nil {
			wait = retryAfter(resp)
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, nil, wait, err
	}
	// The library would close the connection on a frame over its limit:
	// readAll enforces ReadLimit instead, skipping such a frame and
	// keeping the connection.
	ws.SetReadLimit(-1)
	return ws, msgs, 0, nil
}

// retryAfter is the wait a 429 (rate limited) or 418 (banned, Binance's
// answer to clients that ignored the 429s) asks for, in seconds; zero
// otherwise.
func retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusTeapot {
		return 0
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// serve subscribes and reads one connection until it fails, goes stale,
// is replaced by a rotation, or ctx ends. A rotation it asks for (its
// lifetime, the server's notice) goes to s.rotate; it keeps reading
// meanwhile.
func (c *conn) serve(ctx context.Context, s *session) (end ending) {
	f := c.f
	name := f.o.Name
	ws, msgs := s.ws, s.msgs
	cctx, stop := s.ctx, s.stop
	var last atomic.Int64 // clock unix nanos of the last frame
	var handingOff atomic.Bool
	dropping := false // the queue stayed full: drop without waiting until it takes one
	last.Store(f.o.Clock.Now().UnixNano())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watch(cctx, s, &last, &handingOff)
	}()
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		c.keepAlive(cctx, stop, ws, msgs)
	}()
	f.connections.Inc()
	c.up.Store(true)
	defer func() {
		stop(nil)
		<-watched
		<-pinged
		ws.CloseNow()
		f.connections.Dec()
		c.mu.Lock()
		s.closedAt = f.o.Clock.Now().UnixNano()
		c.mu.Unlock()
		if end.reason == "" {
			end.reason = reasonFor(end.err)
		}
	}()

	for _, m := range f.o.Exchange.Subscribe(c.streams) {
		err := msgs.Wait(cctx)
		if err == nil {
			err = ws.Write(cctx, websocket.MessageText, m)
		}
		if err != nil {
			if cause := context.Cause(cctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			} else {
				err = fmt.Errorf("%w: %w", errSubscribe, err)
			}
			end.err = err
			return end
		}
	}

	var (
		buf []byte
		t   tick.Tick
		fr  wire.Frame
	)
	var dec FrameDecoder
	var tickDec TickDecoder
	if fx, ok := f.o.Exchange.(FrameExchange); ok {
		dec = fx.NewDecoder(c.streams)
	} else {
		tickDec = f.o.Exchange.(TickDecoder) // New checked it is one
	}
	// enqueue hands one tick on; false ends the connection (end is set).
	// The caller holds c.mu.
	enqueue := func(t *tick.Tick) bool {
		c.sawTick(ctx, t)
		var err error
		if within, ok := f.o.Queue.(enqueueWithin); ok && f.o.QueueFullWait >= 0 {
			wait := f.o.QueueFullWait
			if dropping {
				wait = 0
			}
			err = within.EnqueueWithin(ctx, t, wait)
			dropping = errors.Is(err, ingest.ErrFull)
		} else {
			err = f.o.Queue.Enqueue(ctx, t)
		}
		if dropping {
			return true // counted by the queue; keep reading
		}
		if err != nil {
			end.err = err
			if ctx.Err() == nil {
				end.fatal = fmt.Errorf("%s: queue refused a tick: %w", name, err)
			}
			return false
		}
		end.ticks++
		return true
	}
	// lock takes the shard lock for one frame's hand-off. A full queue, or
	// the other connection of a rotation blocked on it, is not the server
	// going quiet: the watchdog leaves the connection alone meanwhile.
	lock := func() {
		handingOff.Store(true)
		c.mu.Lock()
	}
	unlock := func() {
		c.mu.Unlock()
		last.Store(f.o.Clock.Now().UnixNano())
		handingOff.Store(false)
	}
	for {
		typ, r, err := ws.Reader(cctx)
		var size int64
		if err == nil {
			buf, size, err = readAll(r, buf[:0], f.o.ReadLimit)
		}
		if err != nil {
			if cause := context.Cause(cctx); cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
			end.err = err
			return end
		}
		now := f.o.Clock.Now()
		last.Store(now.UnixNano())
		if size > f.o.ReadLimit {
			c.bad(&Malformed{wire.ReasonTooLarge, fmt.Sprintf("%d bytes, over the read limit of %d", size, f.o.ReadLimit)}, buf)
			continue
		}
		if typ != websocket.MessageText {
			c.bad(&Malformed{ReasonBinary, "binary message"}, buf)
			continue
		}
		var ev Event
		if dec != nil {
			fr.Reset()
			ev, err = dec.DecodeFrame(buf, now.UnixMicro(), &fr)
		} else {
			ev, err = tickDec.Decode(buf, &t)
		}
		if err != nil {
			c.bad(err, buf)
			continue
		}
		switch ev.Kind {
		case ServerEvent:
			f.m.ServerEvents.WithLabelValues(name, ev.Name).Inc()
			if ok, n := f.logServer.Allow(); ok {
				f.o.Logger.Warn(name+": "+ev.Name+" frame from server", "conn", c.id, "detail", ev.Info, "suppressed", n)
			}
		case Reconnect:
			// The exchange asked for a new connection before it cuts this
			// one off: rotate to one, reading this one until the new one
			// delivers.
			f.m.ServerEvents.WithLabelValues(name, ev.Name).Inc()
			f.o.Logger.Info(name+": server asked for a new connection; rotating", "conn", c.id, "session", s.n, "event", ev.Name, "detail", ev.Info)
			s.ask(ev.Name)
		case Tick:
			ns := now.UnixNano()
			if dec == nil {
				t.ReceivedAt = now.UnixMicro()
				lock()
				s.saw(t.Symbol)
				ok := true
				if c.dedup.tick(s, &t, ns) {
					ok = enqueue(&t)
				} else {
					f.dupTicks.Inc()
				}
				unlock()
				if !ok {
					return end
				}
				continue
			}
			for i := range fr.Rejects {
				c.rejected(&fr.Rejects[i], buf)
			}
			s.sawSeqs(ctx, &fr, now.UnixMilli())
			for i := range fr.Ticks {
				f.m.Received.WithLabelValues(name, fr.Ticks[i].Symbol).Inc()
			}
			lock()
			ok := c.deliver(ctx, s, &fr, ns, enqueue)
			unlock()
			if !ok {
				return end
			}
		}
	}
}

// deliver hands on the records of one frame that the duplicate filter
// lets through: trades, quotes, then ticks. The caller holds c.mu. False
// ends the connection.
func (c *conn) deliver(ctx context.Context, s *session, fr *wire.Frame, now int64, enqueue func(*tick.Tick) bool) bool {
	f := c.f
	for i := range fr.Trades {
		tr := &fr.Trades[i]
		s.saw(tr.Symbol)
		if !c.dedup.trade(s, tr, now) {
			f.dupTrades.Inc()
			continue
		}
		if f.o.Trades != nil {
			f.o.Trades.RecordTrade(ctx, tr)
		}
	}
	for i := range fr.Quotes {
		q := &fr.Quotes[i]
		s.saw(q.Symbol)
		if !c.dedup.quote(s, q, quoteUpdateID(fr, q.Symbol), now) {
			f.dupQuotes.Inc()
			continue
		}
		if f.o.Quotes != nil {
			f.o.Quotes.RecordQuote(ctx, q)
		}
	}
	for i := range fr.Ticks {
		t := &fr.Ticks[i]
		s.saw(t.Symbol)
		if !c.dedup.tick(s, t, now) {
			f.dupTicks.Inc()
			continue
		}
		if !enqueue(t) {
			return false
		}
	}
	return true
}

// enqueueWithin is the part of *ingest.Queue that drops after a bounded
// wait instead of blocking.
type enqueueWithin interface {
	EnqueueWithin(ctx context.Context, t *tick.Tick, wait time.Duration) error
}

// watch ends the connection when nothing arrived for StaleAfter, and asks
// for its rotation when it reaches MaxLifetime.
func (c *conn) watch(cctx context.Context, s *session, last *atomic.Int64, handingOff *atomic.Bool) {
	o := c.f.o
	var lifetime <-chan time.Time
	if o.MaxLifetime > 0 {
		t := o.Clock.NewTimer(o.MaxLifetime)
		defer t.Stop()
		lifetime = t.C()
	}
	wait := o.StaleAfter
	for {
		stale := o.Clock.NewTimer(wait)
		select {
		case <-cctx.Done():
			stale.Stop()
			return
		case <-lifetime:
			stale.Stop()
			lifetime = nil
			s.ask(reasonLifetime)
			// The staleness wait starts over; a connection that went quiet
			// meanwhile is caught one StaleAfter later at most.
			wait = o.StaleAfter
			continue
		case <-stale.C():
		}
		idle := o.Clock.Now().Sub(time.Unix(0, last.Load()))
		switch {
		case handingOff.Load():
			wait = o.StaleAfter
		case idle >= o.StaleAfter:
			s.stop(fmt.Errorf("%w: nothing received for %s", errStale, idle))
			return
		default:
			wait = o.StaleAfter - idle
		}
	}
}

// keepAlive sends the exchange's application-level ping every PingEvery,
// through the client message pacer, until cctx ends. A failed send ends
// the connection.
func (c *conn) keepAlive(cctx context.Context, stop context.CancelCauseFunc, ws *websocket.Conn, msgs *Pacer) {
	ka := c.f.o.KeepAlive
	if ka.Ping == nil {
		return
	}
	for clock.Sleep(cctx, c.f.o.Clock, ka.PingEvery) == nil {
		err := msgs.Wait(cctx)
		if err == nil {
			err = ws.Write(cctx, websocket.MessageText, ka.Ping)
		}
		if err != nil {
			if cctx.Err() == nil {
				stop(fmt.Errorf("keep-alive ping: %w", err))
			}
			return
		}
	}
}

func reasonFor(err error) string {
	var p *rotated
	switch {
	case errors.Is(err, errStale):
		return "stale"
	case errors.Is(err, errSubscribe):
		return "subscribe_failed"
	case errors.Is(err, errNotDelivering):
		return "rotation_not_delivering"
	case errors.As(err, &p):
		return p.name
	case websocket.CloseStatus(err) != -1:
		return "closed_by_server"
	default:
		return "read_error"
	}
}

// bad counts and (at a bounded rate) logs a frame that was skipped.
func (c *conn) bad(err error, frame []byte) {
	f := c.f
	reason, detail := ReasonBadJSON, err.Error()
	var m *Malformed
	var wm *wire.Malformed
	switch {
	case errors.As(err, &m):
		reason, detail = m.Reason, m.Detail
	case errors.As(err, &wm):
		reason, detail = wm.Reason, wm.Detail
	}
	f.m.Malformed.WithLabelValues(f.o.Name, reason).Inc()
	if ok, n := f.logBad.Allow(); ok {
		const show = 200
		snippet := string(frame[:min(len(frame), show)])
		f.o.Logger.Warn(f.o.Name+": skipped a frame", "conn", c.id, "reason", reason, "detail", detail,
			"frame", snippet, "suppressed", n, slog.Int("bytes", len(frame)))
	}
}

// rejected counts and (at a bounded rate) logs one refused entry of a data
// frame whose other entries were kept.
func (c *conn) rejected(r *wire.Reject, frame []byte) {
	detail := r.Reason
	if r.Err != nil {
		detail = r.Err.Error()
	}
	c.bad(&Malformed{r.Reason, r.Channel + " " + r.Symbol + ": " + detail}, frame)
}

// readAll reads one message into buf, reusing its storage, and returns its
// size. Past limit bytes it stops keeping what it reads but reads the
// message to its end, so that one oversized frame is skipped (size >
// limit, buf holding its first limit bytes) rather than ending the
// connection; a message that never ends is the watchdog's.
func readAll(r io.Reader, buf []byte, limit int64) ([]byte, int64, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 1024)
	}
	var size int64
	var discard [4096]byte
	for {
		var n int
		var err error
		if int64(len(buf)) < limit {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			room := buf[len(buf):min(cap(buf), len(buf)+int(limit-int64(len(buf))))]
			n, err = r.Read(room)
			buf = buf[:len(buf)+n]
		} else {
			n, err = r.Read(discard[:])
		}
		size += int64(n)
		if err == io.EOF {
			return buf, size, nil
		}
		if err != nil {
			return buf, size, err
		}
	}
}
