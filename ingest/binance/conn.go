package binance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/tick"
)

// conn is one shard: a set of streams on one connection at a time.
type conn struct {
	f       *Feed
	id      int
	streams []string
	url     string

	up      atomic.Bool
	lastErr atomic.Pointer[string]
}

// Why a connection ended: the reason label of reconnects_total.
var (
	errStale    = errors.New("stale")
	errLifetime = errors.New("max_lifetime")
	errShutdown = errors.New("server_shutdown")
)

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
	log := f.log.With("conn", c.id, "streams", len(c.streams))
	failures := 0
	for {
		if !f.connects.wait(ctx) {
			return nil
		}
		ws, wait, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.m.DialErrors.WithLabelValues(Exchange).Inc()
			c.setDown(err.Error())
			delay := max(wait, f.retry.Delay(failures))
			failures++
			log.Warn("binance: connect failed", "attempt", failures, "retry_in", delay, "err", err)
			if clock.Sleep(ctx, f.o.Clock, delay) != nil {
				return nil
			}
			continue
		}
		log.Info("binance: connected", "url", c.url)
		end := c.serve(ctx, ws)
		if end.fatal != nil {
			return end.fatal
		}
		if ctx.Err() != nil {
			return nil
		}
		f.m.Reconnects.WithLabelValues(Exchange, end.reason).Inc()
		c.setDown(fmt.Sprintf("%s: %v", end.reason, end.err))
		var delay time.Duration
		switch {
		case errors.Is(end.err, errLifetime), errors.Is(end.err, errShutdown):
			// Planned: Binance asks for a new connection "as soon as
			// possible" on serverShutdown, and the lifetime cut is ours.
			failures = 0
		case end.ticks > 0:
			// The connection worked: start the backoff over.
			delay = f.retry.Delay(0)
			failures = 1
		default:
			delay = f.retry.Delay(failures)
			failures++
		}
		log.Info("binance: connection ended; reconnecting", "reason", end.reason, "err", end.err,
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

// dial opens the connection. On a 429 or 418 (Binance's rate limit and
// ban answers) it also returns the server's Retry-After.
func (c *conn) dial(ctx context.Context) (*websocket.Conn, time.Duration, error) {
	f := c.f
	pongs := &pacer{clk: f.o.Clock, every: pongEvery, burst: 1}
	dctx, cancel := context.WithTimeout(ctx, dialLimit)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, c.url, &websocket.DialOptions{
		HTTPClient: f.o.HTTPClient,
		// The library answers each ping with a pong echoing its payload
		// while Read runs; this only keeps a ping flood from making us
		// break Binance's 5 messages per second. An unanswered ping is
		// harmless: Binance waits a minute, and pings every 20 s.
		OnPingReceived: func(context.Context, []byte) bool {
			if pongs.allow() {
				return true
			}
			f.m.PingsDropped.WithLabelValues(Exchange).Inc()
			return false
		},
	})
	if err != nil {
		var wait time.Duration
		if resp != nil {
			if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusTeapot {
				if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s > 0 {
					wait = time.Duration(s) * time.Second
				}
			}
			err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, wait, err
	}
	ws.SetReadLimit(readLimit)
	return ws, 0, nil
}

// serve reads one connection until it fails, goes stale, reaches its
// lifetime, the server announces shutdown, or ctx ends.
func (c *conn) serve(ctx context.Context, ws *websocket.Conn) (end ending) {
	f := c.f
	cctx, stop := context.WithCancelCause(ctx)
	var last atomic.Int64 // clock unix nanos of the last frame
	var handingOff atomic.Bool
	last.Store(f.o.Clock.Now().UnixNano())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		c.watch(cctx, stop, &last, &handingOff)
	}()
	f.m.Connections.WithLabelValues(Exchange).Inc()
	c.up.Store(true)
	defer func() {
		stop(nil)
		<-watched
		ws.CloseNow()
		f.m.Connections.WithLabelValues(Exchange).Dec()
		if end.reason == "" {
			end.reason = reasonFor(end.err)
		}
	}()

	var (
		buf []byte
		t   tick.Tick
	)
	for {
		typ, r, err := ws.Reader(cctx)
		if err == nil {
			buf, err = readAll(r, buf[:0])
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
		if typ != websocket.MessageText {
			c.bad(&malformed{reasonBinary, "binary message"}, buf)
			continue
		}
		kind, st, info, err := f.dec.decode(buf, &t)
		if err != nil {
			c.bad(err, buf)
			continue
		}
		switch kind {
		case frameError:
			f.m.ServerEvents.WithLabelValues(Exchange, "error").Inc()
			if ok, n := f.logServer.Allow(); ok {
				f.log.Warn("binance: error frame from server", "conn", c.id, "error", info, "suppressed", n)
			}
		case frameShutdown:
			// Binance sends this some minutes before it cuts the
			// connection. Replacing it now loses only what is in flight
			// here, and the next ticker snapshot (every second)
			// supersedes that.
			f.m.ServerEvents.WithLabelValues(Exchange, "server_shutdown").Inc()
			f.log.Info("binance: server announced shutdown; reconnecting now", "conn", c.id)
			end.err = errShutdown
			return end
		case frameTicker:
			t.ReceivedAt = now.UnixMicro()
			st.received.Inc()
			// A full queue is not the server going quiet: the watchdog
			// leaves the connection alone while the hand-off blocks.
			handingOff.Store(true)
			err := f.o.Queue.Enqueue(ctx, &t)
			last.Store(f.o.Clock.Now().UnixNano())
			handingOff.Store(false)
			if err != nil {
				end.err = err
				if ctx.Err() == nil {
					end.fatal = fmt.Errorf("binance: queue refused a tick: %w", err)
				}
				return end
			}
			end.ticks++
		}
	}
}

// watch cancels cctx when nothing arrived for StaleAfter, or when the
// connection reaches MaxLifetime.
func (c *conn) watch(cctx context.Context, stop context.CancelCauseFunc, last *atomic.Int64, handingOff *atomic.Bool) {
	o := c.f.o
	lifetime := o.Clock.NewTimer(o.MaxLifetime)
	defer lifetime.Stop()
	wait := o.StaleAfter
	for {
		stale := o.Clock.NewTimer(wait)
		select {
		case <-cctx.Done():
			stale.Stop()
			return
		case <-lifetime.C():
			stale.Stop()
			stop(errLifetime)
			return
		case <-stale.C():
		}
		idle := o.Clock.Now().Sub(time.Unix(0, last.Load()))
		switch {
		case handingOff.Load():
			wait = o.StaleAfter
		case idle >= o.StaleAfter:
			stop(fmt.Errorf("%w: nothing received for %s", errStale, idle))
			return
		default:
			wait = o.StaleAfter - idle
		}
	}
}

func reasonFor(err error) string {
	switch {
	case errors.Is(err, errStale):
		return "stale"
	case errors.Is(err, errLifetime):
		return "max_lifetime"
	case errors.Is(err, errShutdown):
		return "server_shutdown"
	case websocket.CloseStatus(err) != -1:
		return "closed_by_server"
	default:
		return "read_error"
	}
}

// bad counts and (at a bounded rate) logs a frame that was skipped.
func (c *conn) bad(err error, frame []byte) {
	reason, detail := reasonBadJSON, err.Error()
	var m *malformed
	if errors.As(err, &m) {
		reason, detail = m.reason, m.detail
	}
	c.f.m.Malformed.WithLabelValues(Exchange, reason).Inc()
	if ok, n := c.f.logBad.Allow(); ok {
		const show = 200
		snippet := string(frame[:min(len(frame), show)])
		c.f.log.Warn("binance: skipped a frame", "conn", c.id, "reason", reason, "detail", detail,
			"frame", snippet, "suppressed", n, slog.Int("bytes", len(frame)))
	}
}

// readAll reads one message into buf, reusing its storage.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) == 0 {
		buf = make([]byte, 0, 1024)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
