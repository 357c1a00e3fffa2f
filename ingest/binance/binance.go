// Package binance is the Binance spot 24hrTicker source.
//
// It subscribes through the URL (combined streams, /stream?streams=...), so
// it never sends a SUBSCRIBE message; the only frames it sends are pongs,
// which are rate-limited to stay under Binance's 5 incoming messages per
// second per connection. Streams are sharded over as many connections as
// StreamsPerConn requires; each connection has its own read loop,
// reconnects with exponential backoff and jitter, is replaced when it goes
// silent for StaleAfter or reaches MaxLifetime (Binance cuts connections at
// 24 h), and hands its ticks to the queue in the order they arrived. New
// connections are paced process-wide to respect Binance's limit of 300
// connection attempts per 5 minutes per IP.
package binance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/backoff"
)

// Exchange is the Exchange of every tick this source emits.
const Exchange = "binance"

// Options configure a Feed; the first group mirrors Config. Zero values
// take DefaultConfig's.
type Options struct {
	URL            string        // base URL; default wss://stream.binance.com:9443
	Symbols        []string      // any case; ticks carry them upper-case
	StreamsPerConn int           // default 200, at most 1024
	StaleAfter     time.Duration // default 60 s
	MaxLifetime    time.Duration // default 23 h, below Binance's 24 h cut-off
	BackoffMin     time.Duration // default 500 ms
	BackoffMax     time.Duration // default 30 s

	// ConnectBurst connection attempts may go at once, then one per
	// ConnectEvery (defaults 5 and 1.25 s: at most 245 per 5 minutes,
	// under Binance's 300).
	ConnectBurst int
	ConnectEvery time.Duration

	// Queue receives the ticks. Required.
	Queue ingest.Enqueuer
	// HTTPClient dials the WebSocket handshake (http.DefaultClient when
	// nil); tests and proxies inject their own.
	HTTPClient *http.Client
	Clock      clock.Clock
	Logger     *slog.Logger
	Metrics    prometheus.Registerer
}

// Limits Binance documents for spot streams.
const (
	maxStreamsPerConn = 1024
	maxLifetime       = 24 * time.Hour
	// pongEvery spaces our pongs so that, with nothing else sent, a
	// connection stays under 5 client messages per second.
	pongEvery = 250 * time.Millisecond
	readLimit = 1 << 16 // a ticker frame is ~500 bytes
	dialLimit = 15 * time.Second
)

func (o *Options) setDefaults() error {
	def := DefaultConfig()
	if o.URL == "" {
		o.URL = def.URL
	}
	if o.StreamsPerConn == 0 {
		o.StreamsPerConn = def.StreamsPerConn
	}
	if o.StaleAfter == 0 {
		o.StaleAfter = def.StaleAfter
	}
	if o.MaxLifetime == 0 {
		o.MaxLifetime = def.MaxLifetime
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = def.BackoffMin
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = def.BackoffMax
	}
	if o.ConnectBurst == 0 {
		o.ConnectBurst = 5
	}
	if o.ConnectEvery == 0 {
		o.ConnectEvery = 1250 * time.Millisecond
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	o.Clock = clock.OrReal(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}

	u, err := url.Parse(o.URL)
	switch {
	case err != nil:
		return fmt.Errorf("url: %w", err)
	case u.Scheme != "ws" && u.Scheme != "wss":
		return fmt.Errorf("url %q: scheme must be ws or wss", o.URL)
	case u.RawQuery != "":
		return fmt.Errorf("url %q: give the base URL; the source adds /stream?streams=", o.URL)
	case len(o.Symbols) == 0:
		return errors.New("symbols: none given")
	case o.StreamsPerConn < 1 || o.StreamsPerConn > maxStreamsPerConn:
		return fmt.Errorf("streams per connection: %d is outside 1..%d", o.StreamsPerConn, maxStreamsPerConn)
	case o.StaleAfter < 0:
		return fmt.Errorf("stale after: must be > 0, got %s", o.StaleAfter)
	case o.MaxLifetime < 0 || o.MaxLifetime >= maxLifetime:
		return fmt.Errorf("max lifetime: %s must be > 0 and below Binance's 24h cut-off", o.MaxLifetime)
	case o.BackoffMin < 0 || o.BackoffMax < o.BackoffMin:
		return fmt.Errorf("backoff: need 0 < min <= max, got %s..%s", o.BackoffMin, o.BackoffMax)
	case o.ConnectBurst < 1 || o.ConnectEvery < 0:
		return fmt.Errorf("connect pacing: need burst >= 1 and interval > 0, got %d per %s", o.ConnectBurst, o.ConnectEvery)
	case o.Queue == nil:
		return errors.New("queue: required")
	}
	seen := map[string]bool{}
	for _, s := range o.Symbols {
		if s == "" || strings.IndexFunc(s, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
		}) >= 0 {
			return fmt.Errorf("symbols: %q is not a Binance symbol (letters and digits only)", s)
		}
		if seen[strings.ToUpper(s)] {
			return fmt.Errorf("symbols: %q listed twice", s)
		}
		seen[strings.ToUpper(s)] = true
	}
	return nil
}

// Feed is the Binance source. Build it with New; Run it once.
type Feed struct {
	o        Options
	log      *slog.Logger
	m        *ingest.Metrics
	dec      decoder
	conns    []*conn
	connects *pacer
	retry    backoff.Policy

	logBad    ingest.Sometimes
	logServer ingest.Sometimes
}

var _ ingest.Feed = (*Feed)(nil)

// New validates o and builds the feed. It does not dial.
func New(o Options) (*Feed, error) {
	if err := o.setDefaults(); err != nil {
		return nil, fmt.Errorf("binance: %w", err)
	}
	m, err := ingest.NewMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("binance: %w", err)
	}
	f := &Feed{
		o:         o,
		log:       o.Logger.With("source", Exchange),
		m:         m,
		dec:       decoder{streams: map[string]*stream{}},
		connects:  &pacer{clk: o.Clock, every: o.ConnectEvery, burst: o.ConnectBurst},
		retry:     backoff.Policy{Min: o.BackoffMin, Max: o.BackoffMax},
		logBad:    ingest.Sometimes{Every: 10 * time.Second, Clock: o.Clock},
		logServer: ingest.Sometimes{Every: 10 * time.Second, Clock: o.Clock},
	}
	names := make([]string, len(o.Symbols))
	for i, s := range o.Symbols {
		names[i] = strings.ToLower(s) + "@ticker"
		sym := strings.ToUpper(s)
		f.dec.streams[names[i]] = &stream{symbol: sym, received: m.Received.WithLabelValues(Exchange, sym)}
	}
	base := strings.TrimRight(o.URL, "/")
	for i := 0; i < len(names); i += o.StreamsPerConn {
		shard := names[i:min(i+o.StreamsPerConn, len(names))]
		f.conns = append(f.conns, &conn{
			f:       f,
			id:      len(f.conns),
			streams: shard,
			url:     base + "/stream?streams=" + strings.Join(shard, "/"),
		})
	}
	return f, nil
}

// URLs are the combined-stream URLs, one per connection.
func (f *Feed) URLs() []string {
	out := make([]string, len(f.conns))
	for i, c := range f.conns {
		out[i] = c.url
	}
	return out
}

// Run reads every connection until ctx ends, and returns nil then. It
// returns an error only when the queue stops accepting ticks.
func (f *Feed) Run(ctx context.Context) error {
	f.log.Info("binance: starting", "symbols", len(f.o.Symbols), "connections", len(f.conns), "url", f.o.URL)
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

// pacer is a token bucket (as GCRA: one "theoretical arrival time") for
// connection attempts, shared by all of a feed's connections.
type pacer struct {
	clk   clock.Clock
	every time.Duration
	burst int

	tat atomic.Int64 // unix nanos; guarded by CAS
}

// reserve claims the next slot and returns how long to wait for it.
func (p *pacer) reserve() time.Duration {
	for {
		now := p.clk.Now().UnixNano()
		old := p.tat.Load()
		t := max(old, now)
		if p.tat.CompareAndSwap(old, t+int64(p.every)) {
			return max(0, time.Duration(t-int64(p.burst-1)*int64(p.every)-now))
		}
	}
}

// allow claims a slot only if one is free now.
func (p *pacer) allow() bool {
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

// wait blocks until the next slot; false if ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	return clock.Sleep(ctx, p.clk, p.reserve()) == nil
}
