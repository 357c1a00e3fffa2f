// Package wsfeed is the connection manager every WebSocket exchange feed
// runs on: everything that is not the exchange's format. It shards the
// subscriptions over connections, dials with exponential backoff and jitter
// (honouring Retry-After on HTTP 429 and 418), paces connection attempts
// and client messages (GCRA), keeps each connection alive the way the
// exchange wants, replaces a connection that goes silent (the watchdog),
// rotates one that reaches its planned lifetime or that the server says it
// will close make-before-break (the new connection delivers before the old
// one closes, duplicates between them dropped; rotate.go, dedup.go), hands
// every tick to the ingest queue in arrival order, and counts all of it in
// the ingest metrics.
//
// An exchange package supplies an Exchange (endpoint per shard, subscribe
// messages, frame decoder) and its limits in Options; see ingest/binance.
package wsfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/tick"
)

// Exchange is what an exchange package supplies: its format, nothing about
// connections. Its methods are called from every connection's goroutine at
// once. It decodes frames either per connection (FrameExchange: any number
// of records a frame, per-connection state) or one tick a frame
// (TickDecoder); New refuses an Exchange that is neither.
type Exchange interface {
	// URL is the endpoint of one connection carrying streams.
	URL(streams []string) string
	// Subscribe returns the text messages to send, in order, once a
	// connection carrying streams is up: one per request the exchange
	// allows (Bybit spot takes 10 args per request). Nil when the URL
	// subscribes by itself (Binance combined streams).
	Subscribe(streams []string) [][]byte
}

// TickDecoder is an Exchange whose frames carry at most one tick and whose
// decoder keeps no per-connection state.
type TickDecoder interface {
	Exchange
	// Decode decodes one text frame. For a tick it fills t (all but
	// ReceivedAt) and returns Kind Tick. An error is a frame to skip and
	// count: a *Malformed names its reason, any other counts as bad_json.
	Decode(frame []byte, t *tick.Tick) (Event, error)
}

// Kind is what a decoded frame was.
type Kind int

const (
	// Ignore is a frame with nothing to hand on: a pong, a subscription
	// acknowledgement, a heartbeat.
	Ignore Kind = iota
	// Tick: t holds a tick for the queue.
	Tick
	// ServerEvent is a control message worth counting and logging (an
	// error frame): server_events_total{event=Name}.
	ServerEvent
	// Reconnect: the server asked for a new connection (Binance's
	// serverShutdown, OKX 64008). It is counted as a server event, and the
	// connection is rotated at once, without backoff, make-before-break:
	// counted as a reconnect with reason Name once the new one took over.
	Reconnect
)

// Event is the result of decoding one frame.
type Event struct {
	Kind Kind
	Name string // label for ServerEvent and Reconnect: "error", "server_shutdown"
	Info string // detail for the log
}

// Malformed is a frame the decoder refuses. Reason is the reason label of
// malformed_frames_total; Detail is for the log.
type Malformed struct {
	Reason, Detail string
}

func (m *Malformed) Error() string { return m.Reason + ": " + m.Detail }

// Reasons the manager itself gives for a skipped frame.
const (
	ReasonBadJSON = "bad_json"     // a decode error that is not a *Malformed
	ReasonBinary  = "binary_frame" // the exchange sends text
)

// Rate is a GCRA pace: Burst events at once, then one per Every. The zero
// value does not pace.
type Rate struct {
	Every time.Duration
	Burst int
}

// KeepAlive is how a connection stays alive, as the exchange wants it.
//
// Server WebSocket pings are always answered with a pong echoing their
// payload (the protocol, and Binance, require it). A pong is a client
// message, so with Options.ClientMessages set a ping that arrives when no
// slot is free is left unanswered and counted (pings_unanswered_total)
// rather than breaking the exchange's message rate limit.
type KeepAlive struct {
	// Ping, when set, is sent as a text frame every PingEvery while the
	// connection is up, through the client message pacer: OKX's "ping"
	// (answered by "pong", which the decoder returns as Ignore), Bybit's
	// {"op":"ping"} every 20 s, Kraken's {"method":"ping"}. Nil for
	// exchanges that ping us (Binance) or whose heartbeat is a
	// subscription (Coinbase's heartbeats channel, sent by Subscribe).
	Ping      []byte
	PingEvery time.Duration
}

// Options configure a Feed. Zero values take the defaults noted.
type Options struct {
	// Name is the exchange: the exchange label of every metric and the
	// prefix of every log line. Required.
	Name     string
	Exchange Exchange // required
	// Streams are the subscriptions, PerConn to a connection, in order.
	Streams []string
	PerConn int // required, > 0

	// StaleAfter: a connection that delivers nothing for this long is
	// replaced (reason stale); a blocked queue hand-off does not count.
	StaleAfter time.Duration // required
	// MaxLifetime: a connection this old is rotated (reason
	// max_lifetime): replaced make-before-break, see Overlap. Zero: no
	// limit.
	MaxLifetime time.Duration
	// Overlap bounds a rotation: the new connection must deliver its
	// first record within it, and the old one is closed at the latest
	// Overlap after that (sooner once the new one has delivered every pair
	// the old one carried). Default 10 s.
	Overlap time.Duration
	// Backoff spaces reconnect attempts after failures.
	Backoff backoff.Policy
	// Connects paces connection attempts across all of the feed's
	// connections (Binance: 300 per 5 minutes per IP). Zero: unpaced.
	Connects Rate
	// ClientMessages paces what each connection sends (subscriptions,
	// pings, pongs): Binance allows 5 a second. Zero: unpaced.
	ClientMessages Rate
	KeepAlive      KeepAlive
	// ReadLimit caps one frame (default 64 KiB): a larger one is read to
	// its end without being kept, and skipped, counted as malformed with
	// reason too_large; the connection stays. DialTimeout bounds one
	// handshake (default 15 s).
	ReadLimit   int64
	DialTimeout time.Duration

	// Queue receives the ticks. Required.
	Queue ingest.Enqueuer
	// Gaps receives the gaps the feed detects: per pair, from its last
	// tick before a connection dropped to its first after, and (for a
	// FrameExchange) every sequence jump. Nil: gaps are only counted in
	// tickflow_ingest_gaps_total.
	Gaps ingest.GapSink
	// Trades receives a FrameExchange's trades, in arrival order per
	// connection; nil drops them after their sequences are checked.
	Trades ingest.TradeSink
	// Quotes receives a FrameExchange's best bid/ask quotes; nil drops
	// them.
	Quotes ingest.QuoteSink
	// QueueFullWait bounds how long the read loop waits for room in a
	// full queue (one that has EnqueueWithin, as *ingest.Queue) before it
	// drops the tick, counted per pair; while the queue stays full further
	// ticks are dropped without waiting, so the connection keeps reading.
	// An exchange cuts off a connection that stops reading, and the ticks
	// it then loses are counted nowhere. Zero: 1 s; negative: block.
	QueueFullWait time.Duration
	// HTTPClient dials the WebSocket handshake (http.DefaultClient when
	// nil); tests and proxies inject their own.
	HTTPClient *http.Client
	Clock      clock.Clock
	// Logger should already carry the source (With("source", name)).
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

func (o *Options) setDefaults() error {
	if o.ReadLimit == 0 {
		o.ReadLimit = 1 << 16
	}
	if o.Overlap == 0 {
		o.Overlap = 10 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 15 * time.Second
	}
	if o.QueueFullWait == 0 {
		o.QueueFullWait = time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	o.Clock = clock.OrReal(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Name == "":
		return errors.New("name: required")
	case o.Exchange == nil:
		return errors.New("exchange: required")
	case !decodes(o.Exchange):
		return fmt.Errorf("exchange: %T decodes nothing (neither a FrameExchange nor a TickDecoder)", o.Exchange)
	case o.Queue == nil:
		return errors.New("queue: required")
	case len(o.Streams) == 0:
		return errors.New("streams: none given")
	case o.PerConn < 1:
		return fmt.Errorf("streams per connection: must be > 0, got %d", o.PerConn)
	case o.StaleAfter <= 0:
		return fmt.Errorf("stale after: must be > 0, got %s", o.StaleAfter)
	case o.MaxLifetime < 0:
		return fmt.Errorf("max lifetime: must be >= 0, got %s", o.MaxLifetime)
	case o.Overlap < 0:
		return fmt.Errorf("overlap: must be > 0, got %s", o.Overlap)
	case o.KeepAlive.Ping != nil && o.KeepAlive.PingEvery <= 0:
		return fmt.Errorf("keep-alive: a ping needs an interval > 0, got %s", o.KeepAlive.PingEvery)
	}
	if err := o.Backoff.Validate(); err != nil {
		return err
	}
	for what, r := range map[string]Rate{"connect pacing": o.Connects, "client message pacing": o.ClientMessages} {
		if r.Every < 0 || (r.Every > 0 && r.Burst < 1) {
			return fmt.Errorf("%s: need burst >= 1 and interval > 0, got %d per %s", what, r.Burst, r.Every)
		}
	}
	return nil
}

func decodes(x Exchange) bool {
	_, frames := x.(FrameExchange)
	_, ticks := x.(TickDecoder)
	return frames || ticks
}

// Feed runs an exchange's connections. Build it with New; Run it once.
type Feed struct {
	o        Options
	m        *ingest.Metrics
	conns    []*conn
	connects *Pacer

	dialErrors  prometheus.Counter
	connections prometheus.Gauge
	pingsDrop   prometheus.Counter
	gapsTotal   *prometheus.CounterVec
	rotations   *prometheus.CounterVec
	dupTicks    prometheus.Counter
	dupTrades   prometheus.Counter
	dupQuotes   prometheus.Counter
	logBad      ingest.Sometimes
	logServer   ingest.Sometimes
}

var _ ingest.Feed = (*Feed)(nil)

// New validates o and lays out the shards. It does not dial.
func New(o Options) (*Feed, error) {
	if err := o.setDefaults(); err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	m, err := ingest.NewMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	gaps, err := ingest.NewGapCounter(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	rot, err := newMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	f := &Feed{
		o:           o,
		gapsTotal:   gaps,
		rotations:   rot.rotations,
		dupTicks:    rot.duplicates.WithLabelValues(o.Name, "tick"),
		dupTrades:   rot.duplicates.WithLabelValues(o.Name, "trade"),
		dupQuotes:   rot.duplicates.WithLabelValues(o.Name, "quote"),
		m:           m,
		connects:    NewPacer(o.Clock, o.Connects),
		dialErrors:  m.DialErrors.WithLabelValues(o.Name),
		connections: m.Connections.WithLabelValues(o.Name),
		pingsDrop:   m.PingsDropped.WithLabelValues(o.Name),
		logBad:      ingest.Sometimes{Every: 10 * time.Second, Clock: o.Clock},
		logServer:   ingest.Sometimes{Every: 10 * time.Second, Clock: o.Clock},
	}
	for i := 0; i < len(o.Streams); i += o.PerConn {
		shard := o.Streams[i:min(i+o.PerConn, len(o.Streams))]
		f.conns = append(f.conns, &conn{
			f:       f,
			id:      len(f.conns),
			streams: shard,
			url:     o.Exchange.URL(shard),
			dedup:   dedup{overlap: int64(o.Overlap)},
		})
	}
	return f, nil
}

// URLs are the endpoints, one per connection.
func (f *Feed) URLs() []string {
	out := make([]string, len(f.conns))
	for i, c := range f.conns {
		out[i] = c.url
	}
	return out
}

// Shards are the streams of each connection, in order.
func (f *Feed) Shards() [][]string {
	out := make([][]string, len(f.conns))
	for i, c := range f.conns {
		out[i] = c.streams
	}
	return out
}

// Run keeps every connection up until ctx ends, and returns nil then. It
// returns an error only when the queue stops accepting ticks.
func (f *Feed) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range f.conns {
		g.Go(func() error { return c.run(gctx) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Ready reports nil when every connection is up, or which is not and why.
// It suits a health.Registry check.
func (f *Feed) Ready(context.Context) error {
	var errs []error
	for _, c := range f.conns {
		if !c.up.Load() {
			why := "not connected yet"
			if e := c.lastErr.Load(); e != nil {
				why = *e
			}
			errs = append(errs, fmt.Errorf("connection %d/%d: %s", c.id+1, len(f.conns), why))
		}
	}
	return errors.Join(errs...)
}

// Pacer is a token bucket kept as GCRA (one "theoretical arrival time"):
// Burst events at once, then one per Every. Safe for concurrent use.
type Pacer struct {
	clk   clock.Clock
	every time.Duration
	burst int

	tat atomic.Int64 // unix nanos; guarded by CAS
}

// NewPacer returns a pacer for r on clk; a zero Rate never waits.
func NewPacer(clk clock.Clock, r Rate) *Pacer {
	return &Pacer{clk: clock.OrReal(clk), every: r.Every, burst: max(r.Burst, 1)}
}

// Reserve claims the next slot and returns how long to wait for it.
func (p *Pacer) Reserve() time.Duration {
	for {
		now := p.clk.Now().UnixNano()
		old := p.tat.Load()
		t := max(old, now)
		if p.tat.CompareAndSwap(old, t+int64(p.every)) {
			return max(0, time.Duration(t-int64(p.burst-1)*int64(p.every)-now))
		}
	}
}

// Allow claims a slot only if one is free now.
func (p *Pacer) Allow() bool {
	for {
		now := p.clk.Now().UnixNano()
		old := p.tat.Load()
		t := max(old, now)
		if t-int64(p.burst-1)*int64(p.every) > now {
			return false
		}
		if p.tat.CompareAndSwap(old, t+int64(p.every)) {
			return true
		}
	}
}

// Wait blocks until the next slot; it returns ctx's error if ctx ends
// first.
func (p *Pacer) Wait(ctx context.Context) error {
	return clock.Sleep(ctx, p.clk, p.Reserve())
}
