package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/registry"
)

// Spec describes a source type (an exchange, the simulator) to the
// registry. A source package registers one in init(); main blank-imports
// ingest/all, so the compiled-in set is explicit. Adding an exchange is its
// package, its Spec and one import line there.
type Spec struct {
	// Name is the config key (ingest.<name>) and, by convention, the
	// Exchange of its ticks.
	Name string
	// Enabled is whether the source runs when the config does not say.
	Enabled bool
	// Config returns a pointer to a fresh config value holding the
	// source's defaults. The loader decodes the source's YAML section into
	// it strictly (unknown keys are errors); "enabled" is the host's and
	// never reaches it. If the value has a Validate() error method it is
	// called after decoding when the source is enabled; its errors start
	// with the key they are about, relative to the section ("symbols:
	// empty"), so the host can quote the whole key (ingest.binance.symbols).
	Config func() any
	// EnvVars are the environment variables that override keys of the
	// source's section, for addresses and secrets.
	EnvVars []EnvVar
	// New builds the source from its decoded config. It must not dial:
	// that is Run's job.
	New func(env Env, cfg any) (Feed, error)
}

// EnvVar maps an environment variable onto a key of a source's section.
type EnvVar struct {
	Var  string // TICKFLOW_BINANCE_URL
	Key  string // dotted path within the section: "url"
	List bool   // comma separated into a list
}

// Env is what a source is built with.
type Env struct {
	Name string
	// Queue receives the source's ticks. Never nil in a running tickflow.
	Queue   Enqueuer
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Clock   clock.Clock
	// Gaps receives the gaps the source detects (a dropped connection, a
	// sequence jump). Nil: gaps are only counted.
	Gaps GapSink
	// Trades receives the trades of sources configured to follow them.
	// Nil: trades are decoded (for their sequence gaps) but not kept.
	Trades TradeSink
	// Quotes receives the best bid/ask quotes of sources configured to
	// publish them. Nil: not kept.
	Quotes QuoteSink
}

// Readier is implemented by sources that can be not ready (a connection
// down); the host registers it on /readyz as source:<name>. A source
// without it is always ready.
type Readier interface {
	Ready(ctx context.Context) error
}

// Describer is implemented by sources that say what they read from (the
// address, how many symbols) in the host's "started" log line: key/value
// pairs for slog.
type Describer interface {
	Describe() []any
}

// Registry holds source specs by name. The source packages register into
// Default from init(); a test builds its own with NewRegistry.
type Registry = registry.Registry[Spec]

// NewRegistry returns an empty source registry. Its Register panics on a
// name that cannot be a config key, a spec without Config or New, or a
// duplicate.
func NewRegistry() *Registry {
	return registry.New("ingest", func(s Spec) string { return s.Name }, checkSpec)
}

// Default is the registry the source packages register into and the config
// loader and main read unless given another.
var Default = NewRegistry()

func checkSpec(s Spec) error {
	if s.Name == "queue" || strings.IndexFunc(s.Name, func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_') }) >= 0 {
		return errors.New("name must be lower-case letters, digits and _, and not queue (a host key)")
	}
	if s.Config == nil || s.New == nil {
		return errors.New("Config and New are required")
	}
	for _, e := range s.EnvVars {
		if e.Var == "" || e.Key == "" {
			return fmt.Errorf("env override %+v: needs a variable and a key", e)
		}
	}
	return nil
}

// Register adds a source type to Default; it panics on a bad or duplicate
// spec, a programming error caught at init.
func Register(s Spec) { Default.Register(s) }

// Lookup returns Default's spec for name.
func Lookup(name string) (Spec, bool) { return Default.Lookup(name) }

// Typed adapts a constructor that takes the source's own config type to
// Spec.New, so no source repeats the type assertion.
func Typed[C any, F Feed](fn func(Env, *C) (F, error)) func(Env, any) (Feed, error) {
	return registry.Typed(func(env Env, c *C) (Feed, error) {
		f, err := fn(env, c)
		if err != nil {
			return nil, err // not a typed nil inside a non-nil interface
		}
		return f, nil
	})
}

// Majors are the pairs a source ingests unless configured otherwise; a
// fresh slice each call.
func Majors() []string { return []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"} }

// ValidateSymbols checks an enabled source's symbol list: not empty, no
// blank or separator-holding symbol, no pair twice in any case. Errors
// start with key.
func ValidateSymbols(key string, ss []string) error {
	if len(ss) == 0 {
		return fmt.Errorf("%s: empty, but the source is enabled", key)
	}
	seen := map[string]bool{}
	for _, s := range ss {
		if s == "" || strings.ContainsAny(s, " /@:\t") {
			return fmt.Errorf("%s: bad symbol %q", key, s)
		}
		u := strings.ToUpper(s)
		if seen[u] {
			return fmt.Errorf("%s: %q listed twice", key, s)
		}
		seen[u] = true
	}
	return nil
}
