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

// names are the sinks tickflow knows about, in the order they are listed.
var names = [...]string{"cache", "store", "push", "strategy", "risk"}

// Names are the sinks tickflow knows about. A config may name only these; a
// known name whose package is not compiled in is reported as "not available
// in this build" rather than rejected.
func Names() []string { return names[:len(names):len(names)] }

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

// Position is where a tick's record sits in the tick topic.
type Position struct {
	Partition int32
	Offset    int64
}

// Assignment tells a PositionWriter which partitions of which topic it is
// being fed, and where each resumes.
type Assignment struct {
	Topic string
	// TopicID identifies this incarnation of the topic (Kafka's topic ID):
	// a topic deleted and created again gets a new one and its offsets
	// start over, so a position is only meaningful with its TopicID.
	TopicID string
	// Next is, per assigned partition, the offset of the first record the
	// runtime will hand the sink from it.
	Next map[int32]int64
}

// PositionWriter is implemented by sinks that need each tick's place in
// the log (push hands it to browsers so they can resume where they left
// off). The runtime then calls Assigned whenever it is given partitions,
// before any of their ticks, and WriteBatchAt, with pos[i] the position of
// batch[i], instead of WriteBatch. Other sinks are untouched.
type PositionWriter interface {
	Assigned(a Assignment)
	WriteBatchAt(ctx context.Context, batch []tick.Tick, pos []Position) error
}

// TradeSink is Sink for trades (tick.Trade, from the trades topic), with
// the same contract: WriteBatch returns nil only once the batch is durable,
// and must be idempotent, since a batch whose commit was lost is written
// again.
type TradeSink interface {
	Connect(ctx context.Context) error
	WriteBatch(ctx context.Context, batch []tick.Trade) error
	Close(ctx context.Context) error
}

// TradeConsumer is implemented by sinks that also consume the trades topic
// (the store keeps trade history). The host runs a second runtime for the
// TradeSink, on the trades topic, in the consumer group of the sink's name
// plus ".trades" (tickflow.store.trades) with the sink's Sharing and batch
// policy, so ticks and trades are committed each on their own. The host
// closes the TradeSink when that runtime ends, independently of the Sink.
type TradeConsumer interface {
	TradeWriter() TradeSink
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

// BatchPolicy is how the runtime batches ticks for a sink. It batches by
// what is there, not by the clock: a batch is handed on as soon as it
// holds Min ticks (by default at once, whatever a poll returned), and
// while a batch is being written the next one keeps filling, so under
// backlog batches grow up to Size, the ceiling, and a slow backend gets
// few large writes instead of many small ones.
//
// A sink whose writes are costly per call (the store: a ClickHouse INSERT
// makes a part) sets Min, so that while the feed is slow a batch waits for
// Min ticks or MaxWait after its first tick, whichever comes first.
type BatchPolicy struct {
	// Size is the most ticks one WriteBatch gets.
	Size int `yaml:"size"`
	// Min is how many ticks a batch waits for (at most MaxWait) before it
	// is written. 0 or 1 hands on whatever a poll returned at once; above
	// Size it means Size, so a config that only lowers size keeps the
	// policy "size ticks or max_wait".
	Min int `yaml:"min"`
	// MaxWait bounds how long a batch below Min waits for more ticks.
	MaxWait time.Duration `yaml:"max_wait"`
	// MinInterval is the least time from the start of one write to the
	// start of the next while the batch is below Size and its MaxWait has
	// not passed: under a steady feed the sink then writes one batch per
	// interval, as large as the feed makes it, instead of one per Min
	// ticks. The store uses it for ClickHouse's advice of about one INSERT
	// a second; a feed slower than Min per interval is batched by Min and
	// MaxWait alone. 0: no such wait.
	MinInterval time.Duration `yaml:"min_interval"`
}

// Validate checks the policy is usable.
func (p BatchPolicy) Validate() error {
	if p.Size <= 0 {
		return fmt.Errorf("size must be > 0, got %d", p.Size)
	}
	if p.Min < 0 {
		return fmt.Errorf("min must be >= 0, got %d", p.Min)
	}
	if p.MaxWait <= 0 {
		return fmt.Errorf("max_wait must be > 0, got %s", p.MaxWait)
	}
	if p.MinInterval < 0 {
		return fmt.Errorf("min_interval must be >= 0, got %s", p.MinInterval)
	}
	return nil
}

// Threshold is how many ticks make a batch due without waiting for
// MaxWait: Min bounded to 1..Size.
func (p BatchPolicy) Threshold() int { return max(1, min(p.Min, p.Size)) }

// Publisher sends a record to a Kafka topic; strategy and risk use it to
// publish signals and alerts. Produce returns once the record is
// acknowledged.
type Publisher interface {
	Publish(ctx context.Context, topic string, key, value []byte) error
}

// BatchPublisher is the optional part of a Publisher that sends many
// records to a topic in one round trip (the bus producer). PublishAll
// sends keys[i], values[i] for every i and waits for all of them; acked is
// how many leading records, in order, the broker acknowledged, and err,
// nil only when acked == len(values), is why records[acked] was not. A
// record after the first failure may have been acked all the same: a
// caller that retries the suffix may publish it twice.
type BatchPublisher interface {
	Publisher
	PublishAll(ctx context.Context, topic string, keys, values [][]byte) (acked int, err error)
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

// Sharing is how a sink's consumers on several tickflow instances divide
// the tick topic between them (STYLE lesson 20: say which instances see
// which data). Every instance is a process with its own bus.instance_id.
type Sharing int

const (
	// Shared: one consumer group, tickflow.<sink>, for every instance; the
	// partitions are split between them, so each tick is written by one
	// instance. For sinks that write to a store all instances share and
	// whose work is per pair (store, cache on Redis, strategy). Adding an
	// instance adds capacity; one that dies has its partitions moved to
	// the others within bus.session_timeout, from the group's commit.
	Shared Sharing = iota
	// PerInstance: a group per instance, tickflow.<sink>.<instance_id>, so
	// every instance consumes every tick. For sinks whose output lives in
	// the process: push (each instance's browsers must get every tick of
	// their filters) and the in-process cache (each instance's API serves
	// every pair). An instance that restarts with the same instance_id
	// resumes from its own commit, so nothing it had not handled is lost.
	PerInstance
	// Exclusive: one group, tickflow.<sink>, in which a single instance
	// owns every partition and the others stand by. For rules that compare
	// pairs on different partitions (risk's price spike across exchanges
	// and stale feed across an exchange's pairs): the rule needs every
	// tick in one place, and two active instances would raise every alert
	// twice. When the owner goes, a standby takes every partition over
	// from the group's commit within bus.session_timeout.
	Exclusive
)

func (s Sharing) String() string {
	switch s {
	case Shared:
		return "shared"
	case PerInstance:
		return "per-instance"
	case Exclusive:
		return "exclusive"
	}
	return fmt.Sprintf("Sharing(%d)", int(s))
}

// Group is the consumer group the sink consumes in on the instance with
// the given id.
func (s Sharing) Group(sink, instanceID string) string {
	if s == PerInstance {
		return "tickflow." + sink + "." + instanceID
	}
	return "tickflow." + sink
}

// Spec describes a sink type to the registry.
type Spec struct {
	Name string
	// Sharing says how the sink's instances divide the tick topic, given
	// its decoded config (the cache's depends on where it keeps ticks).
	// Nil means Shared.
	Sharing func(cfg any) Sharing
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

// SharingOf is the spec's Sharing for the decoded config cfg.
func (s Spec) SharingOf(cfg any) Sharing {
	if s.Sharing == nil {
		return Shared
	}
	return s.Sharing(cfg)
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
		return fmt.Errorf("not one of %v", Names())
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
	for _, n := range names {
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
