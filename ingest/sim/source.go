package sim

import (
	"fmt"
	"time"

	"github.com/tickflow/tickflow/ingest"
)

func init() { ingest.Register(Spec()) }

// Spec is the simulator's registration: ingest.sim in the config, off
// unless enabled.
func Spec() ingest.Spec {
	return ingest.Spec{
		Name:   Exchange,
		Config: func() any { c := DefaultConfig(); return &c },
		New:    ingest.Typed(newSource),
	}
}

// Config is the ingest.sim section.
type Config struct {
	Symbols  []string      `yaml:"symbols"`
	Interval time.Duration `yaml:"interval"` // per symbol
	Seed     int64         `yaml:"seed"`     // 0 = random
}

// DefaultConfig is the documented default; a zero Options.Interval takes
// its interval.
func DefaultConfig() Config {
	return Config{Symbols: ingest.Majors(), Interval: 250 * time.Millisecond}
}

// Validate checks the section of an enabled simulator; errors start with
// the key they are about.
func (c *Config) Validate() error {
	if err := ingest.ValidateSymbols("symbols", c.Symbols); err != nil {
		return err
	}
	if c.Interval <= 0 {
		return fmt.Errorf("interval: must be > 0, got %s", c.Interval)
	}
	return nil
}

func newSource(env ingest.Env, c *Config) (*Feed, error) {
	return New(Options{
		Symbols: c.Symbols, Interval: c.Interval, Seed: c.Seed,
		Queue: env.Queue, Logger: env.Logger, Metrics: env.Metrics, Clock: env.Clock,
	})
}

// Describe is what the simulator emits, for the host's "started" log line;
// the seed replays the run.
func (f *Feed) Describe() []any {
	return []any{"symbols", len(f.markets), "interval", f.o.Interval, "seed", f.seed}
}

var _ ingest.Describer = (*Feed)(nil)
