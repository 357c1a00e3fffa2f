// Package risk is the risk monitor sink: it watches every pair for price
// volatility (the seed's rule), stale feeds, crossed or locked books and
// price spikes against other exchanges, and publishes alerts to the
// risk.alerts topic, the push sink's "alert" channel, an optional webhook
// and the REST API.
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
// the bus; the push channel, the REST list and the webhook are fed after
// that and are best effort. Alert IDs are deterministic, and a bounded set
// of recently published IDs plus per-pair event-time ordering keeps a
// retried or replayed batch from publishing an alert twice.
package risk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

func init() {
	sinks.Register(sinks.Spec{
		Name: "risk",
		// Small batches: an alert waits for its batch to fill or time out.
		Batch:  sinks.BatchPolicy{Size: 500, MaxWait: 50 * time.Millisecond},
		Config: func() any { return DefaultConfig() },
		New:    sinks.Typed(New),
	})
}

// Pusher is what the risk monitor needs from the push sink: fan a payload
// out to a channel's subscribers without waiting for them.
type Pusher interface {
	Publish(channel, key string, payload []byte)
}

// Sink is the risk monitor.
type Sink struct {
	cfg    *Config
	env    sinks.Env
	log    *slog.Logger
	m      *metrics
	recent *recent
	hook   *notifier // nil without a webhook URL

	mu      sync.Mutex // serialises batches, guards everything below
	eng     *engine
	outbox  []alert.Alert // raised, not yet acknowledged by the bus
	loaded  bool
	push    Pusher
	lookups bool
	store   *journal.Store // nil without state_dir
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
	s := &Sink{
		cfg:    cfg,
		env:    env,
		log:    env.Logger.With("sink", "risk"),
		m:      m,
		recent: newRecent(cfg.Recent),
		eng:    newEngine(cfg, m),
	}
	if cfg.Webhook.URL != "" {
		s.hook = newNotifier(cfg.Webhook, env.Clock, s.log, m)
	}
	return s, nil
}

// Connect loads the saved state (once) and finds the push sink, if one is
// running.
func (s *Sink) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lookups {
		s.lookups = true
		push, ok, err := sinks.PeerAs[Pusher](s.env.Peer, "push")
		if err != nil {
			s.log.Warn("risk: the push sink cannot publish to channels; alerts go to Kafka and the API only", "err", err)
		} else if ok {
			s.push = push
		}
	}
	if s.loaded || s.cfg.StateDir == "" {
		s.loaded = true
		return nil
	}
	if err := s.load(); err != nil {
		s.m.stateErrors.Inc()
		return fmt.Errorf("risk: %w", err)
	}
	s.loaded = true
	return nil
}

// load restores the state from the journal. A corrupt one costs a window's
// worth of history, not the monitor: it is kept aside and the monitor
// starts afresh.
func (s *Sink) load() error {
	st, err := journal.Open(s.cfg.StateDir, journalName)
	if err != nil {
		return err
	}
	err = s.replay(st)
	if err == nil {
		s.store = st
		return nil
	}
	st.Close()
	if !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, errBadRecord) {
		return err
	}
	s.log.Error("risk: saved state unusable, starting with empty windows", "err", err, "dir", s.cfg.StateDir)
	s.m.stateErrors.Inc()
	s.eng = newEngine(s.cfg, s.m)
	s.recent = newRecent(s.cfg.Recent)
	s.store, err = journal.Discard(s.cfg.StateDir, journalName)
	return err
}

var errBadRecord = errors.New("unreadable journal record")

func (s *Sink) replay(st *journal.Store) error {
	snapData, records, err := st.Load()
	if err != nil {
		return err
	}
	if snapData != nil {
		var snap snapshot
		if err := json.Unmarshal(snapData, &snap); err != nil {
			return fmt.Errorf("%w: %v", journal.ErrCorrupt, err)
		}
		if snap.Version != stateVersion {
			return fmt.Errorf("%w: version %d, want %d", journal.ErrCorrupt, snap.Version, stateVersion)
		}
		s.eng.restore(&snap)
		for _, a := range snap.Recent {
			s.recent.add(a)
		}
	}
	// The logged ticks' alerts are on the bus already; counting them again
	// would be wrong, so the replay counts into a registry nobody reads.
	live := s.eng.m
	s.eng.m, _ = newMetrics(prometheus.NewRegistry())
	defer func() { s.eng.m = live }()
	n := 0
	for _, rec := range records {
		ticks, err := recordTicks(rec)
		if err != nil {
			return fmt.Errorf("%w: %v", errBadRecord, err)
		}
		for i := range ticks {
			s.eng.apply(&ticks[i])
		}
		n += len(ticks)
		for _, a := range s.eng.drain() {
			s.recent.add(a)
		}
	}
	s.m.pairs.Set(float64(len(s.eng.pairs)))
	s.log.Info("risk: state restored", "pairs", len(s.eng.pairs), "replayed_ticks", n)
	return nil
}

// WriteBatch applies the rules to the batch and publishes the alerts it
// raises. A failed publish keeps the unpublished alerts for the retry, and
// the retried ticks are recognised by event time and skipped, so a batch
// never raises an alert twice.
func (s *Sink) WriteBatch(ctx context.Context, batch []tick.Tick) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loaded {
		return sinks.ErrNotConnected
	}
	for i := range batch {
		if s.eng.apply(&batch[i]) && s.cfg.StateDir != "" {
			s.pending = appendTick(s.pending, &batch[i])
			s.nPending++
		}
	}
	s.outbox = append(s.outbox, s.eng.drain()...)
	if err := s.flush(ctx); err != nil {
		return err
	}
	if err := s.save(); err != nil {
		s.m.stateErrors.Inc()
		return fmt.Errorf("risk: %w", err)
	}
	return nil
}

// save logs the ticks applied since the last save, or snapshots the whole
// state when the log has grown enough.
func (s *Sink) save() error {
	if s.store == nil || s.nPending == 0 {
		return nil
	}
	var err error
	if s.store.NeedsSnapshot() {
		err = s.snapshotState()
	} else {
		err = s.store.Append(s.pending)
	}
	if err != nil {
		return err
	}
	s.pending, s.nPending = s.pending[:0], 0
	return nil
}

// snapshotState writes the whole state and empties the journal.
func (s *Sink) snapshotState() error {
	snap := s.eng.snapshot()
	snap.Recent = s.recent.all()
	b, err := json.Marshal(&snap)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return s.store.Snapshot(b)
}

// flush publishes the outbox in order, dropping each alert once acked.
func (s *Sink) flush(ctx context.Context) error {
	for len(s.outbox) > 0 {
		a := &s.outbox[0]
		b, err := json.Marshal(a)
		if err != nil {
			return fmt.Errorf("risk: encode alert: %w", err)
		}
		key := a.Key()
		if err := s.env.Publisher.Publish(ctx, alert.Topic, []byte(key), b); err != nil {
			s.m.publishErrors.Inc()
			return fmt.Errorf("risk: publish to %s: %w", alert.Topic, err)
		}
		s.recent.add(*a)
		if s.push != nil {
			s.push.Publish(alert.Channel, key, b)
		}
		if s.hook != nil {
			s.hook.enqueue(*a)
		}
		s.log.Info("risk: alert", "id", a.ID, "rule", a.Rule, "status", a.Status, "severity", a.Severity, "pair", key, "msg", a.Message)
		s.outbox = s.outbox[1:]
	}
	s.outbox = nil
	return nil
}

// Close closes the state journal; the state itself is saved after every
// batch.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store == nil {
		return nil
	}
	err := s.store.Close()
	s.store = nil
	return err
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
	return s.recent.list(since, min, limit)
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
