package wsfeed

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/backoff"
)

// SourceSpec is the registration of an exchange source the way every one
// is made: ingest.<name> in the config with def's defaults, disabled by
// default, TICKFLOW_<NAME>_URL overriding its url, built by build.
func SourceSpec[C any, F ingest.Feed](name string, def func() C, build func(ingest.Env, *C) (F, error)) ingest.Spec {
	return ingest.Spec{
		Name:    name,
		Config:  func() any { c := def(); return &c },
		EnvVars: []ingest.EnvVar{{Var: "TICKFLOW_" + strings.ToUpper(name) + "_URL", Key: "url"}},
		New:     ingest.Typed(build),
	}
}

// SourceConfig is the part of an exchange source's config section every
// exchange on the manager shares; a source's Config embeds it inline
// (`yaml:",inline"`), so ingest.okx.url, ingest.okx.symbols, … are its
// keys.
type SourceConfig struct {
	URL     string   `yaml:"url"`
	Symbols []string `yaml:"symbols"` // the exchange's native symbols
	// StreamsPerConn caps the symbols one connection carries.
	StreamsPerConn int `yaml:"streams_per_conn"`
	// StaleAfter: a connection that delivers nothing (not even a
	// heartbeat or pong) for this long is replaced.
	StaleAfter time.Duration `yaml:"stale_after"`
	// MaxLifetime: a connection this old is replaced; 0 for none.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	BackoffMin  time.Duration `yaml:"backoff_min"`
	BackoffMax  time.Duration `yaml:"backoff_max"`
	// Trades also subscribes each symbol's trade channel: trades go to the
	// trades topic and their ids are checked for gaps.
	Trades bool `yaml:"trades"`
	// Quotes publishes each symbol's best bid/ask: from the ticker where it
	// carries the sizes (Kraken, Coinbase), else from the exchange's
	// top-of-book channel, subscribed too (OKX bbo-tbt, Bybit orderbook.1).
	Quotes bool `yaml:"quotes"`
	// PingEvery spaces the exchange's application-level pings (none for
	// exchanges whose keep-alive is a channel).
	PingEvery time.Duration `yaml:"ping_every"`
}

// Limits are what an exchange documents, for SourceConfig.Check.
type Limits struct {
	Exchange          string
	MaxStreamsPerConn int
	// MaxPingEvery: pings must come at least this often (OKX: before 30 s
	// of silence). Zero: the exchange has no application ping.
	MaxPingEvery time.Duration
	// Symbol reports what is wrong with a symbol, or nil.
	Symbol func(string) error
}

// Check validates c for an enabled source; errors start with the key they
// are about.
func (c *SourceConfig) Check(l Limits) error {
	if c.URL == "" {
		return errors.New("url: required when enabled")
	}
	if !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://") {
		return fmt.Errorf("url: %q is not a ws:// or wss:// URL", c.URL)
	}
	if len(c.Symbols) == 0 {
		return errors.New("symbols: empty, but the source is enabled")
	}
	seen := map[string]bool{}
	for _, s := range c.Symbols {
		if s == "" || strings.ContainsAny(s, " \t,") {
			return fmt.Errorf("symbols: bad symbol %q", s)
		}
		if l.Symbol != nil {
			if err := l.Symbol(s); err != nil {
				return fmt.Errorf("symbols: %q: %w", s, err)
			}
		}
		if seen[s] {
			return fmt.Errorf("symbols: %q listed twice", s)
		}
		seen[s] = true
	}
	if c.StreamsPerConn < 1 || c.StreamsPerConn > l.MaxStreamsPerConn {
		return fmt.Errorf("streams_per_conn: %d is outside 1..%d (%s's limit)", c.StreamsPerConn, l.MaxStreamsPerConn, l.Exchange)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{{"stale_after", c.StaleAfter}, {"backoff_min", c.BackoffMin}, {"backoff_max", c.BackoffMax}} {
		if d.d <= 0 {
			return fmt.Errorf("%s: must be > 0, got %s", d.key, d.d)
		}
	}
	if c.MaxLifetime < 0 {
		return fmt.Errorf("max_lifetime: must be >= 0, got %s", c.MaxLifetime)
	}
	if c.BackoffMin > c.BackoffMax {
		return errors.New("backoff_min: larger than backoff_max")
	}
	switch {
	case l.MaxPingEvery == 0 && c.PingEvery != 0:
		return fmt.Errorf("ping_every: %s has no application ping", l.Exchange)
	case l.MaxPingEvery != 0 && (c.PingEvery <= 0 || c.PingEvery > l.MaxPingEvery):
		return fmt.Errorf("ping_every: %s is outside (0, %s] (%s's keep-alive)", c.PingEvery, l.MaxPingEvery, l.Exchange)
	}
	return nil
}

// Options fills the connection, keep-alive and environment fields of
// Options from c and env; the caller adds Exchange, Streams, the pacing
// rates and the ping message.
func (c *SourceConfig) Options(name string, env ingest.Env) Options {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := Options{
		Name:        name,
		PerConn:     c.StreamsPerConn,
		StaleAfter:  c.StaleAfter,
		MaxLifetime: c.MaxLifetime,
		Backoff:     backoff.Policy{Min: c.BackoffMin, Max: c.BackoffMax},
		KeepAlive:   KeepAlive{PingEvery: c.PingEvery},
		Queue:       env.Queue,
		Gaps:        env.Gaps,
		Trades:      env.Trades,
		Clock:       env.Clock,
		Logger:      log.With("source", name),
		Metrics:     env.Metrics,
	}
	if !c.Trades {
		o.Trades = nil
	}
	if c.Quotes {
		o.Quotes = env.Quotes
	}
	return o
}

// Describe is the address and size of the feed, for the host's "started"
// log line.
func (f *Feed) Describe() []any {
	return []any{"url", f.o.Exchange.URL(nil), "symbols", len(f.o.Streams), "connections", len(f.conns)}
}

var (
	_ ingest.Readier   = (*Feed)(nil)
	_ ingest.Describer = (*Feed)(nil)
)
