package binance

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wsfeed"
)

func init() { ingest.Register(Spec()) }

// Spec is the Binance source's registration: ingest.binance in the config,
// enabled by default, TICKFLOW_BINANCE_URL overriding its url.
func Spec() ingest.Spec {
	s := wsfeed.SourceSpec(Exchange, DefaultConfig, newSource)
	s.Enabled = true
	return s
}

// Config is the ingest.binance section.
type Config struct {
	URL     string   `yaml:"url"`
	Symbols []string `yaml:"symbols"`
	// StreamsPerConn caps streams on one connection (Binance allows 1024).
	StreamsPerConn int `yaml:"streams_per_conn"`
	// StaleAfter: a connection that delivers nothing for this long is
	// considered dead and replaced.
	StaleAfter time.Duration `yaml:"stale_after"`
	// MaxLifetime: reconnect before Binance's 24 h cut-off.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// Backoff bounds for reconnects (exponential with jitter).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// Trades also subscribes each symbol's <symbol>@trade stream: trades
	// go to the trades topic and their ids are checked for gaps.
	Trades bool `yaml:"trades"`
	// Quotes also subscribes <symbol>@bookTicker: best bid/ask quotes to
	// the quotes topic. Each of the two is one more stream per symbol
	// against streams_per_conn.
	Quotes bool `yaml:"quotes"`
}

// DefaultConfig is the documented default, and what a zero Options field
// takes.
func DefaultConfig() Config {
	return Config{
		URL:            "wss://stream.binance.com:9443",
		Symbols:        ingest.Majors(),
		StreamsPerConn: 200,
		StaleAfter:     60 * time.Second,
		MaxLifetime:    23 * time.Hour,
		BackoffMin:     500 * time.Millisecond,
		BackoffMax:     30 * time.Second,
	}
}

// Validate checks the section of an enabled source; errors start with the
// key they are about.
func (c *Config) Validate() error {
	if c.URL == "" {
		return errors.New("url: required when enabled")
	}
	if !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://") {
		return fmt.Errorf("url: %q is not a ws:// or wss:// URL", c.URL)
	}
	if err := ingest.ValidateSymbols("symbols", c.Symbols); err != nil {
		return err
	}
	o := Options{Trades: c.Trades, Quotes: c.Quotes}
	if k := o.streamsPerSymbol(); c.StreamsPerConn < k || c.StreamsPerConn > maxStreamsPerConn {
		return fmt.Errorf("streams_per_conn: %d is outside %d..%d (Binance's limit; each symbol takes %d streams)", c.StreamsPerConn, k, maxStreamsPerConn, k)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"stale_after", c.StaleAfter}, {"max_lifetime", c.MaxLifetime}, {"backoff_min", c.BackoffMin}, {"backoff_max", c.BackoffMax}} {
		if d.d <= 0 {
			return fmt.Errorf("%s: must be > 0, got %s", d.key, d.d)
		}
	}
	if c.MaxLifetime >= maxLifetime {
		return fmt.Errorf("max_lifetime: %s must be under Binance's 24h cut-off", c.MaxLifetime)
	}
	if c.BackoffMin > c.BackoffMax {
		return errors.New("backoff_min: larger than backoff_max")
	}
	return nil
}

func newSource(env ingest.Env, c *Config) (*Feed, error) {
	o := Options{
		URL: c.URL, Symbols: c.Symbols, StreamsPerConn: c.StreamsPerConn, StaleAfter: c.StaleAfter,
		MaxLifetime: c.MaxLifetime, BackoffMin: c.BackoffMin, BackoffMax: c.BackoffMax,
		Trades: c.Trades, Quotes: c.Quotes,
		Queue: env.Queue, Gaps: env.Gaps, Logger: env.Logger, Metrics: env.Metrics, Clock: env.Clock,
	}
	if c.Trades {
		o.TradeSink = env.Trades
	}
	if c.Quotes {
		o.QuoteSink = env.Quotes
	}
	return New(o)
}

// Describe is the address and size of the feed, for the host's "started"
// log line.
func (f *Feed) Describe() []any {
	return []any{"url", strings.Join(f.URLs(), " "), "symbols", len(f.o.Symbols)}
}

var (
	_ ingest.Readier   = (*Feed)(nil)
	_ ingest.Describer = (*Feed)(nil)
)
