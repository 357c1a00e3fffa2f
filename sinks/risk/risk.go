// Package risk is the risk monitor sink: it watches every pair for price
// volatility (the seed's rule), stale feeds, crossed or locked books and
// price spikes against other exchanges, and publishes alerts to the
// risk.alerts topic, an optional webhook and its REST list. Browsers get
// them from the topic: the push sink follows it.
//
// # Time
//
// Every window, cooldown and staleness judgement uses the ticks' event time,
// never the wall clock, so replaying the same ticks gives the same alerts
// with the same IDs. That includes the stale-feed rule: a pair is stale when
// the newest event time seen on its exchange is more than stale_feed.after
// past the pair's last tick. "While its source is connected" falls out of
// this: a source that is down sends nothing, its exchange's event time stops,
// and none of its pairs is reported (the ingest health check reports the
// source itself). Sweeps run every stale_feed.check_every of the exchange's
// event time, so no timer is needed and the result does not depend on batch
// boundaries.
//
// Volatility and crossed-book alerts depend only on one pair's ticks, which
// Kafka keeps in order, so they are exactly reproducible. Stale-feed and
// price-spike alerts compare pairs that may sit in different partitions;
// their IDs are stable (a stale alert's ID derives from the silent pair's
// last tick) but a borderline case can be judged differently when a
// consumer catching up reads one partition ahead of another.
//
// # Delivery
//
// WriteBatch returns nil only after the batch's alerts are acknowledged by
// the bus; the REST list and the webhook are fed after that and are best
// effort. Alert IDs are deterministic, and a bounded set
// of recently published IDs plus per-pair event-time ordering keeps a
// retried or replayed batch from publishing an alert twice.
package risk

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "risk",
		// As strategy's: polled batches go at once; under backlog the
		// ceiling amortises the alert publish round trip.
		Batch: sinks.BatchPolicy{Size: 20_000, MaxWait: 50 * time.Millisecond},
		// The price-spike rule compares an instrument across exchanges and the
		// stale-feed rule an exchange's pairs, which sit on different
		// partitions: one instance consumes everything, the others stand
		// by, so no rule misses a pair and no alert is raised twice.
		Sharing: func(any) sinks.Sharing { return sinks.Exclusive },
		Config:  func() any { return DefaultConfig() },
		New:     sinks.Typed(New),
	})
}

// Sink is the risk monitor.
type Sink struct {
	cfg    *Config
	env    sinks.Env
	log    *slog.Logger
	m      *metrics
	quiet  *metrics // counts replayed ticks' alerts, which are on the bus already
	recent events.Alerts
	hook   *notifier // nil without a webhook URL

	mu      sync.Mutex // serialises batches, guards everything below
	eng     *engine
	outbox  events.Outbox[alert.Alert] // raised, not yet acknowledged by the bus
	journal events.Journal
	// pending is the journal record of ticks applied but not yet logged:
	// it outlives a failed attempt, whose retry finds the ticks skipped.
	pending  []byte
	nPending int
}

var (
	_ sinks.Sink    = (*Sink)(nil)
	_ sinks.Service = (*Sink)(nil)
)

// New builds the monitor. It reads nothing and dials nothing; saved state
// is loaded on the first Connect.
func New(env sinks.Env, cfg *Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("risk: %w", err)
	}
	if env.Publisher == nil {
		return nil, fmt.Errorf("risk: %w: %w", sinks.ErrUnavailable, errNoPublisher)
	}
	env = env.WithDefaults()
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return nil, fmt.Errorf("risk: metrics: %w", err)
	}
	quiet, _ := newMetrics(prometheus.NewRegistry())
	s := &Sink{
		cfg:    cfg,
		env:    env,
		log:    env.Logger.With("sink", "risk"),
		m:      m,
		quiet:  quiet,
		recent: events.NewAlerts(cfg.Recent),
		eng:    newEngine(cfg, m),
	}
	if cfg.Webhook.URL != "" {
		s.hook = newNotifier(cfg.Webhook, env.Clock, s.log, m)
	}
	s.outbox = events.Outbox[alert.Alert]{
		Topic: alert.Topic, Publisher: env.Publisher, Key: (*alert.Alert).Key,
		Errors: m.publishErrors, Recent: s.recent.Recent, Acked: s.acked,
	}
	s.journal = events.Journal{
		Dir: cfg.StateDir, Name: journalName, Version: stateVersion, State: (*journaled)(s),
		Logger: s.log, Errors: m.stateErrors,
	}
	return s, nil
}

// Connect loads the saved state, once.
func (s *Sink) Connect(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.journal.Load(); err != nil {
		return fmt.Errorf("risk: %w", err)
	}
	s.m.pairs.Set(float64(len(s.eng.pairs)))
	return nil
}

// WriteBatch applies the rules to the batch and publishes the alerts it
// raises. A failed publish keeps the unpublished alerts for the retry, and
// the retried ticks are recognised by event time and skipped, so a batch
// never raises an alert twice.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.journal.Loaded() {
		return sinks.ErrNotConnected
	}
	for i := range batch {
		if s.eng.apply(&batch[i]) && s.journal.Enabled() {
			s.pending = journal.AppendTick(s.pending, &batch[i])
			s.nPending++
		}
	}
	s.outbox.Add(s.eng.drain()...)
	if err := s.outbox.Flush(ctx); err != nil {
		return fmt.Errorf("risk: %w", err)
	}
	if s.nPending == 0 {
		return nil
	}
	if err := s.journal.Save(func() ([]byte, error) { return s.pending, nil }); err != nil {
		return fmt.Errorf("risk: %w", err)
	}
	s.pending, s.nPending = s.pending[:0], 0
	return nil
}

// acked follows an alert the bus has acknowledged: to the webhook and the
// log. Browsers get it from the topic (the push sink follows it).
func (s *Sink) acked(a *alert.Alert) {
	if s.hook != nil {
		s.hook.enqueue(*a)
	}
	s.log.Info("risk: alert", "id", a.ID, "rule", a.Rule, "status", a.Status, "severity", a.Severity, "pair", a.Key(), "msg", a.Message)
}

// Close closes the state journal; the state itself is saved after every
// batch.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal.Close()
}

// Run delivers webhooks for the life of the process.
func (s *Sink) Run(ctx context.Context) error {
	if s.hook == nil {
		<-ctx.Done()
		return nil
	}
	return s.hook.run(ctx)
}

// RecentAlerts lists recent alerts at or after since (event time, Unix ms)
// with at least severity min ("" for any), newest first, at most limit (0
// for all kept).
func (s *Sink) RecentAlerts(since int64, min alert.Severity, limit int) []alert.Alert {
	return s.recent.RecentAlerts(since, min, limit)
}

type metrics struct {
	ticks, duplicates, publishErrors, stateErrors, webhookRetries prometheus.Counter
	skipped, suppressed, alerts, webhook                          *prometheus.CounterVec
	pairs                                                         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_risk_ticks_total", Help: "Ticks the risk rules were applied to."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_risk_alerts_duplicate_total", Help: "Alerts raised again by a replay and not republished."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_risk_publish_errors_total", Help: "Failed publishes of alerts to the bus (the batch is retried)."}),
		stateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_risk_state_errors_total", Help: "Failures to read or write the saved state (journal)."}),
		webhookRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_risk_webhook_retries_total", Help: "Webhook delivery attempts after the first."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_risk_ticks_skipped_total", Help: "Ticks not applied: invalid, or replayed (event time not after the pair's last)."}, []string{"reason"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_risk_alerts_suppressed_total", Help: "Conditions held back by a rule's cooldown."}, []string{"rule"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_risk_alerts_total", Help: "Alerts raised, by rule and status."}, []string{"rule", "status"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_risk_webhook_deliveries_total", Help: "Webhook deliveries by result: ok, failed (after retries), dropped (queue full)."}, []string{"result"}),
		pairs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_risk_pairs", Help: "Pairs the monitor tracks."}),
	}
	for _, c := range []prometheus.Collector{m.ticks, m.duplicates, m.publishErrors, m.stateErrors, m.webhookRetries,
		m.skipped, m.suppressed, m.alerts, m.webhook, m.pairs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
