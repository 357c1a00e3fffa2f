// Package strategy is the strategy engine sink: configured strategies of
// pluggable types (price_cross, sma_cross, breakout, momentum, or any type
// registered with RegisterType) watch their pair's ticks and publish
// signals to the strategy.signals topic and its REST list (browsers get them
// from the topic: the push sink follows it). A built-in paper executor keeps simulated positions and
// PnL per strategy; no real order is ever placed.
//
// # Per tick
//
// ShouldTrigger runs inline on the consuming goroutine for every tick of a
// strategy's pair, in event-time order (Kafka keeps a pair in one
// partition). Triggers go to a bounded worker pool for Execute (see
// pool.go for how a full pool is handled). WriteBatch waits for its jobs,
// publishes the signals in trigger order, applies them to the paper
// accounts, and returns nil only once the signals are acknowledged by the
// bus.
//
// # Backtests
//
// The routing of ticks to strategies, the replay skip, the turning of
// decisions into signals and the paper fills are one engine (engine.go),
// which the sink runs with its pool and Backtester (backtester.go) runs
// with Execute inline, so a backtest decides what live decides.
//
// # State across restarts
//
// With state_dir set, the engine keeps its state in a journal (package
// journal): every batch appends the ticks it applied and the signals it
// decided, once the signals are on the bus and before WriteBatch returns,
// so before the batch's offsets are committed; when the log outgrows the
// last snapshot, the whole state (every strategy's windows and sides, the
// paper accounts, each pair's last event time, recently published signal
// IDs and the REST list) is written instead. A restart loads the snapshot
// and replays the logged batches: ticks through ShouldTrigger, which is
// deterministic, and the logged signals onto the paper accounts, because
// Execute need not be. The runtime then replays from the last committed
// offset, and ticks the state already reflects are skipped by event time,
// so moving averages, channels and positions carry on exactly. A crash
// between publishing and logging republishes that batch's signals with the
// same IDs (at-least-once). A journal on local disk rather than the cache
// backend because it must be written in step with the offset commit and
// the cache is an optional, best-effort layer; the cost is one append of
// the batch, not a rewrite of the state. A strategy whose type, pair or
// parameters changed starts from its configuration afresh (warmed by the
// logged ticks, but without the old one's fills).
//
// Without state_dir, state lives in memory only: after a restart each
// strategy is rebuilt from the ticks replayed since the last commit, which
// for a running system is almost nothing, so windows refill from scratch
// and paper accounts start at zero.
package strategy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "strategy",
		// A batch goes as soon as it is polled, so a signal never waits
		// for one to fill. Each batch that decides a signal pays one
		// publish round trip before it returns, and under load that trip
		// is tens of milliseconds (the broker is busy with every other
		// group): at a 500-tick ceiling the strategy fell to a third of
		// the feed's rate (docs/PERFORMANCE.md), and at 5000 it still sat
		// at the ceiling with a 120 k backlog at 95 k ticks/s on a
		// saturated box, so under backlog batches may grow to 20 000.
		Batch:  sinks.BatchPolicy{Size: 20_000, MaxWait: 50 * time.Millisecond},
		Config: func() any { return DefaultConfig() },
		New:    sinks.Typed(New),
	})
}

// Sink is the strategy engine.
type Sink struct {
	cfg    *Config
	env    sinks.Env
	log    *slog.Logger
	m      *metrics
	pool   *pool
	recent events.Signals

	batchMu sync.Mutex // serialises WriteBatch and Connect
	outbox  events.Outbox[signal.Signal]
	journal events.Journal
	// The journal record being built: what was applied and decided but not
	// yet logged. It outlives a failed attempt, whose retry finds the
	// ticks skipped.
	pendingTicks   []byte
	nPending       int
	pendingSignals []loggedSignal

	mu sync.RWMutex // guards the engine (strategy and paper state) against API reads
	engine
}

var (
	_ sinks.Sink    = (*Sink)(nil)
	_ sinks.Service = (*Sink)(nil)
)

// New builds the engine and every configured strategy.
func New(env sinks.Env, cfg *Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("strategy: %w", err)
	}
	if env.Publisher == nil {
		return nil, fmt.Errorf("strategy: %w: no publisher to send signals to", sinks.ErrUnavailable)
	}
	env = env.WithDefaults()
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return nil, fmt.Errorf("strategy: metrics: %w", err)
	}
	s := &Sink{
		cfg:    cfg,
		env:    env,
		log:    env.Logger.With("sink", "strategy"),
		m:      m,
		recent: events.NewSignals(cfg.Recent),
	}
	s.outbox = events.Outbox[signal.Signal]{
		Topic: signal.Topic, Publisher: env.Publisher, Key: (*signal.Signal).Key,
		Errors: m.publishErrors, Recent: s.recent.Recent, Acked: s.acked,
	}
	s.journal = events.Journal{
		Dir: cfg.StateDir, Name: journalName, Version: stateVersion, State: (*journaled)(s),
		Logger: s.log, Errors: m.stateErrors,
	}
	s.pool = newPool(cfg, env.Clock, m, s.log)
	busy := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tickflow_strategy_workers_busy", Help: "Workers running an Execute."},
		func() float64 { return float64(s.pool.busy.Load()) })
	if err := env.Metrics.Register(busy); err != nil {
		return nil, fmt.Errorf("strategy: metrics: %w", err)
	}
	if err := s.build(); err != nil {
		return nil, err
	}
	return s, nil
}

// build makes every configured strategy afresh.
func (s *Sink) build() error { return s.engine.build(s.cfg.Strategies) }

// Run serves the worker pool for the life of the process.
func (s *Sink) Run(ctx context.Context) error { return s.pool.run(ctx) }

// errNoPool: WriteBatch before the host started Run.
var errNoPool = errors.New("worker pool not running yet")

// Connect loads the saved state, once.
func (s *Sink) Connect(context.Context) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	if err := s.journal.Load(); err != nil {
		return fmt.Errorf("strategy: %w", err)
	}
	return nil
}

// WriteBatch feeds the batch to the strategies, runs their triggers on the
// pool and publishes the resulting signals. Retried ticks are recognised by
// event time and skipped; signals not yet acknowledged stay queued for the
// retry, so none is lost or published twice.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	if !s.journal.Loaded() {
		return sinks.ErrNotConnected
	}
	if !s.pool.running.Load() {
		return fmt.Errorf("strategy: %w: %w", sinks.ErrNotConnected, errNoPool)
	}
	var triggers []pending
	s.mu.Lock()
	for i := range batch {
		t := &batch[i]
		if err := t.Validate(); err != nil {
			s.m.skipped.WithLabelValues("invalid").Inc()
			continue
		}
		s.m.ticks.Inc()
		n := len(triggers)
		var st fed
		st, _, triggers = s.feed(t, triggers)
		if st == fedReplayed {
			s.m.skipped.WithLabelValues("replayed").Inc()
		}
		if st != fedApplied {
			continue
		}
		if s.journal.Enabled() {
			s.pendingTicks = journal.AppendTick(s.pendingTicks, t)
			s.nPending++
		}
		for _, tr := range triggers[n:] {
			s.m.triggers.WithLabelValues(tr.inst.entry.Name).Inc()
		}
	}
	s.mu.Unlock()

	if len(triggers) > 0 {
		b := jobBatch{p: s.pool}
		for _, p := range triggers {
			b.submit(ctx, p.inst, p.tr)
		}
		b.wait(ctx)
		if err := ctx.Err(); err != nil {
			// Shutting down mid-batch: do not let the offsets commit.
			return err
		}
		s.decide(b.jobs)
	}
	if err := s.outbox.Flush(ctx); err != nil {
		return fmt.Errorf("strategy: %w", err)
	}
	if s.nPending == 0 && len(s.pendingSignals) == 0 {
		return nil
	}
	if err := s.journal.Save(func() ([]byte, error) { return encodeRecord(s.pendingTicks, s.pendingSignals) }); err != nil {
		return fmt.Errorf("strategy: %w", err)
	}
	s.pendingTicks, s.nPending, s.pendingSignals = s.pendingTicks[:0], 0, nil
	return nil
}

// decide turns finished jobs into signals, in trigger order, and fills
// them on paper.
func (s *Sink) decide(jobs []*job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// One log line per batch, not per trigger: a flood must not become a
	// flood of logs too.
	var lost, failed int
	var lastLost, lastFailed error
	defer func() {
		if lost > 0 {
			s.log.Warn("strategy: triggers lost (see tickflow_strategy_triggers_dropped_total and exec_timeouts_total)", "count", lost, "last", lastLost)
		}
		if failed > 0 {
			s.log.Error("strategy: executes failed", "count", failed, "last", lastFailed)
		}
	}()
	for _, j := range jobs {
		name := j.inst.entry.Name
		switch {
		case errors.Is(j.err, errTimeout), errors.Is(j.err, errDropped), errors.Is(j.err, errAbandoned):
			lost++
			lastLost = fmt.Errorf("%s: %w", name, j.err)
			continue
		case j.err != nil:
			s.m.execErrors.Inc()
			failed++
			lastFailed = fmt.Errorf("%s: %w", name, j.err)
			continue
		case j.dec == nil:
			continue // Execute decided against it
		}
		in := j.inst
		sig, err := s.fill(in, &j.tr, j.dec)
		switch {
		case errors.Is(err, errDuplicate):
			s.m.duplicates.Inc()
			continue
		case err != nil:
			s.m.execErrors.Inc()
			failed++
			lastFailed = fmt.Errorf("%s: %w", name, err)
			continue
		}
		if s.journal.Enabled() {
			s.pendingSignals = append(s.pendingSignals, loggedSignal{Fingerprint: in.fp, Signal: sig})
		}
		s.m.signals.WithLabelValues(name, string(sig.Side)).Inc()
		s.outbox.Add(sig)
	}
}

// acked logs a signal the bus has acknowledged. Browsers get it from the
// topic (the push sink follows it).
func (s *Sink) acked(sig *signal.Signal) {
	s.log.Debug("strategy: signal", "id", sig.ID, "strategy", sig.Strategy, "side", sig.Side, "pair", sig.Key(), "price", sig.Price, "reason", sig.Reason)
}

// Close closes the state journal; state is saved after every batch, and
// the pool stops with Run's context.
func (s *Sink) Close(context.Context) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	return s.journal.Close()
}

// RecentSignals lists recent signals of strategy ("" for all) at or after
// since (event time, Unix ms), newest first, at most limit (0 for all kept).
func (s *Sink) RecentSignals(strategy string, since int64, limit int) []signal.Signal {
	return s.recent.RecentSignals(strategy, since, limit)
}

// Strategies reports every configured strategy with its state and paper
// account, in configuration order.
func (s *Sink) Strategies() []signal.StrategyStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]signal.StrategyStatus, 0, len(s.insts))
	for _, in := range s.insts {
		st, err := in.strategy.State()
		if err != nil {
			st = json.RawMessage(`null`)
		}
		q := in.quantity.Text('f')
		un := in.paper.unrealized(&in.mark)
		out = append(out, signal.StrategyStatus{
			Name:     in.entry.Name,
			Type:     in.entry.Type,
			Exchange: in.pair.Exchange,
			Symbol:   in.pair.Symbol,
			Params:   in.entry.ParamsView(),
			State:    st,
			Signals:  in.signals,
			Paper: signal.PaperAccount{
				Quantity:      q,
				AllowShort:    in.entry.AllowShort,
				Position:      in.paper.Position.Text('f'),
				EntryPrice:    in.paper.Entry.Text('f'),
				MarkPrice:     in.mark.Text('f'),
				RealizedPnL:   reduced(&in.paper.Realized),
				UnrealizedPnL: reduced(&un),
				Fills:         in.paper.Fills,
			},
		})
	}
	return out
}

type metrics struct {
	ticks, waits, timeouts, execErrors, duplicates, publishErrors, stateErrors prometheus.Counter
	skipped, dropped, triggers, signals                                        *prometheus.CounterVec
	queue                                                                      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "tickflow_strategy_" + name, Help: help})
	}
	v := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tickflow_strategy_" + name, Help: help}, labels)
	}
	m := &metrics{
		ticks:         c("ticks_total", "Valid ticks consumed."),
		waits:         c("trigger_waits_total", "Triggers that found the worker queue full and waited for room."),
		timeouts:      c("exec_timeouts_total", "Executes that overran the timeout."),
		execErrors:    c("exec_errors_total", "Executes that failed or returned a bad decision."),
		duplicates:    c("signals_duplicate_total", "Signals raised again by a replay and not republished."),
		publishErrors: c("publish_errors_total", "Failed publishes of signals to the bus (the batch is retried)."),
		stateErrors:   c("state_errors_total", "Failures to read, write or restore the saved state (journal)."),
		skipped:       v("ticks_skipped_total", "Ticks not applied: invalid, or replayed (event time not after the pair's last).", "reason"),
		dropped:       v("triggers_dropped_total", "Triggers never executed: queue_full (no room within the timeout) or abandoned (not started in time).", "reason"),
		triggers:      v("triggers_total", "Triggers raised by ShouldTrigger.", "strategy"),
		signals:       v("signals_total", "Signals published.", "strategy", "side"),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_strategy_queue_depth", Help: "Triggers waiting for a worker."}),
	}
	for _, col := range []prometheus.Collector{m.ticks, m.waits, m.timeouts, m.execErrors, m.duplicates, m.publishErrors,
		m.stateErrors, m.skipped, m.dropped, m.triggers, m.signals, m.queue} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// reduced drops the trailing zeros products leave ("3.00" -> "3").
func reduced(d *apd.Decimal) string {
	var r apd.Decimal
	r.Reduce(d)
	return r.Text('f')
}
