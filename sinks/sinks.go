// Package sinks is the contract between tickflow's consumers and the runtime
// that feeds them: the Sink interface, the registry sink packages register
// into, and the environment a sink is built with.
//
// A sink package registers a Spec in init(); main blank-imports sinks/all so
// the compiled-in set is explicit. The bus runtime owns consuming, batching,
// retries with backoff and offset commits; a sink only writes batches.
package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/registry"
	"github.com/tickflow/tickflow/tick"
)

// Names are the sinks tickflow knows about. A config may name only these; a
// known name whose package is not compiled in is reported as "not available
// in this build" rather than rejected.
var Names = []string{"cache", "store", "push", "strategy", "risk"}

// Sink consumes batches of ticks. The runtime calls Connect before the first
// batch and again whenever a method returns an error wrapping ErrNotConnected.
// WriteBatch must return nil only once the batch is durable (or, for
// best-effort sinks, handed on); only then are its offsets committed. A
// batch that fails is retried, so WriteBatch must be idempotent.
type Sink interface {
	Connect(ctx context.Context) error
	WriteBatch(ctx context.Context, batch []tick.Tick) error
	Close(ctx context.Context) error
}

// ErrNotConnected tells the runtime to call Connect again before retrying.
var ErrNotConnected = errors.New("sink not connected")

// ErrUnavailable, returned (wrapped) by a Spec's New, means the sink cannot
// run with this configuration (say, no server address). The host reports it
// on /readyz and carries on without consuming for it, so nothing is skipped.
var ErrUnavailable = errors.New("sink unavailable")

// Readier is implemented by sinks that know more about their health than the
// runtime's view of their last batch (a backend that is down between
// batches, say). A nil error means ready.
type Readier interface {
	Ready(ctx context.Context) error
}

// BatchPolicy is how many ticks the runtime accumulates before calling
// WriteBatch: Size ticks, or whatever arrived within MaxWait of the first.
type BatchPolicy struct {
	Size    int           `yaml:"size"`
	MaxWait time.Duration `yaml:"max_wait"`
}

// Validate checks the policy is usable.
func (p BatchPolicy) Validate() error {
	if p.Size <= 0 {
		return fmt.Errorf("size must be > 0, got %d", p.Size)
	}
	if p.MaxWait <= 0 {
		return fmt.Errorf("max_wait must be > 0, got %s", p.MaxWait)
	}
	return nil
}

// Publisher sends a record to a Kafka topic; strategy and risk use it to
// publish signals and alerts. Produce returns once the record is
// acknowledged.
type Publisher interface {
	Publish(ctx context.Context, topic string, key, value []byte) error
}

// Env is what a sink is built with.
type Env struct {
	Name    string
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Clock   clock.Clock
	// Publisher produces to the bus. Never nil in a running tickflow.
	Publisher Publisher
	// Follower reads a side topic (risk.alerts, strategy.signals) without
	// a consumer group, so every process that follows sees every record.
	// Nil when the host runs no bus (some tests).
	Follower Follower
	// Backend returns a store this process can read, by name: "cache" (the
	// latest-tick cache) or "store" (the history store). Backends are
	// built from config whether or not their sink consumes in this
	// process, so a reader never depends on a peer sink running; the
	// caller asserts the interface it declares. Nil or false: none.
	Backend func(name string) (any, bool)
}

// Follower is the bus's group-less reader (bus.Follower): Follow calls fn
// for each record of topic from backfill records before each partition's
// end until ctx ends, then returns nil.
type Follower interface {
	Follow(ctx context.Context, topic string, backfill int, fn func(key, value []byte)) error
}

// Spec describes a sink type to the registry.
type Spec struct {
	Name string
	// Batch is the default batch policy; config may override it.
	Batch BatchPolicy
	// Config returns a pointer to a fresh config value with defaults set.
	// The loader decodes the sink's YAML section into it strictly (unknown
	// keys are errors); "enabled" and "batch" are handled by the host and
	// never reach it. If the value has a Validate() error method it is
	// called after decoding. Nil means the sink takes no settings.
	Config func() any
	// New builds the sink from its decoded config. It should not dial
	// anything; that is Connect's job.
	New func(env Env, cfg any) (Sink, error)
}

// Registry holds sink specs by name. The sink packages register into
// Default from init(); a test builds its own with NewRegistry.
type Registry = registry.Registry[Spec]

// NewRegistry returns an empty sink registry. Its Register panics on a
// name not in Names, a duplicate, or an unusable default batch policy.
func NewRegistry() *Registry {
	return registry.New("sinks", func(s Spec) string { return s.Name }, checkSpec)
}

// Default is the registry the sink packages register into and the config
// loader and main read unless given another.
var Default = NewRegistry()

func checkSpec(s Spec) error {
	if !known(s.Name) {
		return fmt.Errorf("not one of %v", Names)
	}
	if err := s.Batch.Validate(); err != nil {
		return fmt.Errorf("default batch: %w", err)
	}
	return nil
}

// Register adds a sink type to Default. It panics on an unknown or
// duplicate name: both are programming errors caught at init.
func Register(s Spec) { Default.Register(s) }

// Lookup returns Default's spec for name.
func Lookup(name string) (Spec, bool) { return Default.Lookup(name) }

// Registered lists the compiled-in sink names, sorted.
func Registered() []string { return Default.Registered() }

// Known reports whether name is a sink tickflow defines.
func Known(name string) bool { return known(name) }

func known(name string) bool {
	for _, n := range Names {
		if n == name {
			return true
		}
	}
	return false
}

// Validator is implemented by sink configs with cross-field checks.
type Validator interface{ Validate() error }

// Service is implemented by sinks with work of their own beyond batches (an
// HTTP listener, a worker pool, a timer). The host starts Run after New and
// before the sink's runtime (so before the first Connect), and cancels its
// context only after the runtime has written and committed its final
// batch, so that batch can still use what Run serves. Run returns nil when
// ctx is cancelled; an error stops tickflow.
type Service interface {
	Run(ctx context.Context) error
}

// Starter is implemented by a Service whose batches need Run to be serving
// first (the strategy worker pool): the host starts the sink's runtime only
// once Started is closed (or Run has returned).
type Starter interface {
	Started() <-chan struct{}
}

// Typed adapts a constructor that takes the sink's own config type to
// Spec.New, so no sink repeats the type assertion.
func Typed[C any, S Sink](fn func(Env, *C) (S, error)) func(Env, any) (Sink, error) {
	return func(env Env, cfg any) (Sink, error) {
		c, ok := cfg.(*C)
		if !ok {
			return nil, fmt.Errorf("config is %T, want %T", cfg, (*C)(nil))
		}
		s, err := fn(env, c)
		if err != nil {
			return nil, err // not a typed nil inside a non-nil interface
		}
		return s, nil
	}
}

// WithDefaults fills the optional parts of an Env the way a sink built in a
// test expects: a discarding logger, the wall clock, a private registry.
func (e Env) WithDefaults() Env {
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	e.Clock = clock.OrReal(e.Clock)
	if e.Metrics == nil {
		e.Metrics = prometheus.NewRegistry()
	}
	return e
}
