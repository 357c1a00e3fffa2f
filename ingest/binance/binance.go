// Package binance is the Binance spot 24hrTicker source: Binance's format
// and limits on the ingest/wsfeed connection manager.
//
// It subscribes through the URL (combined streams, /stream?streams=...), so
// it never sends a SUBSCRIBE message; the only frames it sends are pongs,
// which are rate-limited to stay under Binance's 5 incoming messages per
// second per connection. The manager shards the streams over as many
// connections as StreamsPerConn requires; each connection has its own read
// loop, reconnects with exponential backoff and jitter, is replaced when it
// goes silent for StaleAfter, is rotated make-before-break when it reaches
// MaxLifetime (Binance cuts connections at 24 h) or Binance announces a
// serverShutdown, and hands its ticks to the queue in the order they
// arrived. New connections are paced to respect Binance's limit of 300
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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wsfeed"
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
	// Trades also subscribes <symbol>@trade; Quotes <symbol>@bookTicker.
	// Each is one more stream per symbol on a connection.
	Trades, Quotes bool

	// ConnectBurst connection attempts may go at once, then one per
	// ConnectEvery (defaults 5 and 1.25 s: at most 245 per 5 minutes,
	// under Binance's 300).
	ConnectBurst int
	ConnectEvery time.Duration

	// Queue receives the ticks. Required.
	Queue ingest.Enqueuer
	// TradeSink and QuoteSink receive trades and quotes (nil: decoded,
	// their sequences checked, then dropped); Gaps the gaps (nil: only
	// counted).
	TradeSink ingest.TradeSink
	QuoteSink ingest.QuoteSink
	Gaps      ingest.GapSink
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
	case o.StreamsPerConn < o.streamsPerSymbol() || o.StreamsPerConn > maxStreamsPerConn:
		return fmt.Errorf("streams per connection: %d is outside %d..%d", o.StreamsPerConn, o.streamsPerSymbol(), maxStreamsPerConn)
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

// streamsPerSymbol is how many streams each symbol takes on a connection.
func (o *Options) streamsPerSymbol() int {
	n := 1
	if o.Trades {
		n++
	}
	if o.Quotes {
		n++
	}
	return n
}

// Feed is the Binance source. Build it with New; Run it once.
type Feed struct {
	o   Options
	log *slog.Logger
	ws  *wsfeed.Feed
}

var _ ingest.Feed = (*Feed)(nil)

// New validates o and builds the feed. It does not dial.
func New(o Options) (*Feed, error) {
	if err := o.setDefaults(); err != nil {
		return nil, fmt.Errorf("binance: %w", err)
	}
	f := &Feed{
		o:   o,
		log: o.Logger.With("source", Exchange),
	}
	// A symbol's streams stay on one connection: the shard size is the
	// largest multiple of the streams a symbol takes within
	// StreamsPerConn, so the extra streams count against Binance's 1024.
	var names []string
	dec := &decoder{streams: map[string]*stream{}}
	for _, s := range o.Symbols {
		base := strings.ToLower(s) + "@"
		kinds := []string{KindTicker}
		if o.Trades {
			kinds = append(kinds, KindTrade)
		}
		if o.Quotes {
			kinds = append(kinds, KindBook)
		}
		for _, k := range kinds {
			names = append(names, base+k)
			dec.add(base + k)
		}
	}
	k := o.streamsPerSymbol()
	var err error
	f.ws, err = wsfeed.New(wsfeed.Options{
		Name:           Exchange,
		Exchange:       format{base: strings.TrimRight(o.URL, "/"), dec: dec},
		Streams:        names,
		PerConn:        o.StreamsPerConn / k * k,
		StaleAfter:     o.StaleAfter,
		MaxLifetime:    o.MaxLifetime,
		Backoff:        backoff.Policy{Min: o.BackoffMin, Max: o.BackoffMax},
		Connects:       wsfeed.Rate{Every: o.ConnectEvery, Burst: o.ConnectBurst},
		ClientMessages: wsfeed.Rate{Every: pongEvery, Burst: 1},
		ReadLimit:      readLimit,
		Queue:          o.Queue,
		Trades:         o.TradeSink,
		Quotes:         o.QuoteSink,
		Gaps:           o.Gaps,
		HTTPClient:     o.HTTPClient,
		Clock:          o.Clock,
		Logger:         f.log,
		Metrics:        o.Metrics,
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// URLs are the combined-stream URLs, one per connection.
func (f *Feed) URLs() []string { return f.ws.URLs() }

// Run reads every connection until ctx ends, and returns nil then. It
// returns an error only when the queue stops accepting ticks.
func (f *Feed) Run(ctx context.Context) error {
	f.log.Info("binance: starting", "symbols", len(f.o.Symbols), "connections", len(f.ws.URLs()), "url", f.o.URL)
	return f.ws.Run(ctx)
}

// Ready reports nil when every connection is up, or which is not and why.
// It suits a health.Registry check.
func (f *Feed) Ready(ctx context.Context) error { return f.ws.Ready(ctx) }

// format is Binance's side of the connection manager: combined-stream URLs,
// no subscribe messages (so the only client messages are pongs: the extra
// streams cost nothing against the 5 messages a second), a Decoder per
// connection.
type format struct {
	base string
	dec  *decoder // its stream table is read-only once built: shared
}

func (x format) URL(streams []string) string {
	return x.base + "/stream?streams=" + strings.Join(streams, "/")
}

func (format) Subscribe([]string) [][]byte { return nil }

func (x format) NewDecoder([]string) wsfeed.FrameDecoder {
	return wsfeed.Wire(x.dec.frames(nil), events)
}

func events(f *wire.Frame) wsfeed.Event {
	switch f.Kind {
	case wire.Error:
		return wsfeed.Event{Kind: wsfeed.ServerEvent, Name: "error", Info: f.Control.Message}
	case wire.Notice:
		// Binance sends this some minutes before it cuts the connection:
		// the manager rotates it, reading this one until the new one
		// delivers.
		return wsfeed.Event{Kind: wsfeed.Reconnect, Name: "server_shutdown"}
	}
	return wsfeed.FromWire(f)
}
