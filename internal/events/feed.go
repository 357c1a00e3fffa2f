package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
)

// FeedOptions are what a feed is built with; every field is optional.
type FeedOptions struct {
	Logger  *slog.Logger
	Metrics prometheus.Registerer
	Clock   clock.Clock
}

// feedUndecodable is shared by every feed of a registry, labelled by topic.
func feedUndecodable(reg prometheus.Registerer, topic string) (prometheus.Counter, error) {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tickflow_recent_feed_undecodable_total",
		Help: "Records of an alert or signal topic the API's recent lists skipped because they do not decode.",
	}, []string{"topic"})
	if reg != nil {
		if err := reg.Register(v); err != nil {
			are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
			if !ok {
				return nil, err
			}
			if v, ok = are.ExistingCollector.(*prometheus.CounterVec); !ok {
				return nil, err
			}
		}
	}
	return v.WithLabelValues(topic), nil
}

// feed follows one topic into a bounded list of the newest events by
// event time (partitions interleave them), each once (a reconnect reads
// the backfill again; a sink that crashed between publishing and saving
// republishes with the same IDs).
type feed[E any] struct {
	reader Reader
	recent *Recent[E]
}

func newFeed[E any](f sinks.Follower, topic string, capacity int, opt FeedOptions, id func(*E) string, ts func(*E) int64, onAdd func(*E)) (*feed[E], error) {
	if f == nil {
		return nil, fmt.Errorf("events: feed of %s: no follower", topic)
	}
	if capacity < 1 {
		return nil, fmt.Errorf("events: feed of %s: capacity %d < 1", topic, capacity)
	}
	bad, err := feedUndecodable(opt.Metrics, topic)
	if err != nil {
		return nil, fmt.Errorf("events: feed of %s: metrics: %w", topic, err)
	}
	fd := &feed[E]{recent: NewRecent[E](capacity)}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd.reader = Reader{
		Follower: f, Topic: topic, Backfill: capacity, Undecodable: bad,
		Logger: log.With("component", "recent-feed"), Clock: opt.Clock,
		Handle: func(_, value []byte) error {
			var e E
			if err := json.Unmarshal(value, &e); err != nil {
				return err
			}
			if id(&e) == "" {
				return errors.New("event without an id")
			}
			if fd.recent.AddByTime(e, ts, id) {
				if onAdd != nil {
					onAdd(&e)
				}
			}
			return nil
		},
	}
	return fd, nil
}

// AlertFeed is the recent alerts the REST API lists, read from the
// risk.alerts topic: it answers in any process, whether or not the risk
// monitor runs there, and after a restart it starts with the last
// capacity alerts of each partition (the backfill). It implements
// api.AlertSource.
type AlertFeed struct {
	Alerts
	f *feed[alert.Alert]
}

// NewAlertFeed follows alert.Topic through f, keeping up to capacity
// alerts. Call Run for the life of the process.
func NewAlertFeed(f sinks.Follower, capacity int, opt FeedOptions) (*AlertFeed, error) {
	fd, err := newFeed(f, alert.Topic, capacity, opt, func(a *alert.Alert) string {
		if a.ID == "" {
			return ""
		}
		return a.DedupKey()
	}, alertTime, nil)
	if err != nil {
		return nil, err
	}
	return &AlertFeed{Alerts: Alerts{fd.recent}, f: fd}, nil
}

// Run follows the topic until ctx ends, then returns nil.
func (a *AlertFeed) Run(ctx context.Context) error { return a.f.reader.Run(ctx) }

// SignalFeed is the recent signals the REST API lists, read from the
// strategy.signals topic, as AlertFeed is for alerts. It implements
// api.SignalSource.
type SignalFeed struct {
	Signals
	f *feed[signal.Signal]

	mu         sync.Mutex
	strategies map[string]*signal.StrategyStatus
	order      []string
	engine     StrategyEngine
}

// NewSignalFeed follows signal.Topic through f, keeping up to capacity
// signals. Call Run for the life of the process.
func NewSignalFeed(f sinks.Follower, capacity int, opt FeedOptions) (*SignalFeed, error) {
	sf := &SignalFeed{strategies: map[string]*signal.StrategyStatus{}}
	fd, err := newFeed(f, signal.Topic, capacity, opt, func(s *signal.Signal) string { return s.ID }, signalTime, sf.note)
	if err != nil {
		return nil, err
	}
	sf.Signals, sf.f = Signals{fd.recent}, fd
	return sf, nil
}

// Run follows the topic until ctx ends, then returns nil.
func (s *SignalFeed) Run(ctx context.Context) error { return s.f.reader.Run(ctx) }

// note records the strategy a signal came from.
func (s *SignalFeed) note(sig *signal.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.strategies[sig.Strategy]
	if st == nil {
		st = &signal.StrategyStatus{Name: sig.Strategy, Params: map[string]string{}, State: json.RawMessage(`null`)}
		s.strategies[sig.Strategy] = st
		s.order = append(s.order, sig.Strategy)
	}
	st.Type, st.Exchange, st.Symbol = sig.Type, sig.Exchange, sig.Symbol
	st.Signals++
}

// StrategyEngine is what a strategy engine running in this process (the
// strategy sink) tells the signal feed: every configured strategy with its
// state and paper account.
type StrategyEngine interface {
	Strategies() []signal.StrategyStatus
}

// UseEngine makes Strategies answer from the strategy engine running in
// this process, while RecentSignals still reads the topic. Call it before
// serving.
func (s *SignalFeed) UseEngine(e StrategyEngine) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.engine = e
}

// Strategies lists the strategies of the engine set with UseEngine. Without
// one it lists those the topic has carried signals from, in the order
// first seen, as far as signals tell: name, type, pair and the number of
// signals this feed has read. A strategy's state and paper account live in
// the engine that runs it and are not on the topic, so State is null and
// Paper is empty; a strategy that has not signalled yet is not listed.
func (s *SignalFeed) Strategies() []signal.StrategyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.engine != nil {
		return s.engine.Strategies()
	}
	out := make([]signal.StrategyStatus, 0, len(s.order))
	for _, name := range s.order {
		st := *s.strategies[name]
		st.Params = map[string]string{}
		out = append(out, st)
	}
	return out
}
