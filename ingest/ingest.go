// Package ingest is where ticks enter tickflow: exchange sources (one
// package each, plus a simulated exchange) and the hand-off from a source's
// read loop to the Kafka producer.
//
// A source decodes frames and hands each tick to a bounded Queue. What the
// Queue accepted is never dropped. When it is full, Enqueue blocks (the
// simulator: its ticks are made on demand, so waiting loses nothing) and
// the wait is logged and measured; EnqueueWithin, which live exchange
// connections use, waits a bounded time and then drops the tick, counted
// per pair, because a connection that stops reading is cut off by the
// exchange and loses ticks that are then counted nowhere. A Pump drains the Queue into a Publisher (the bus producer)
// with bounded concurrency, keeping each pair's ticks in order, and on
// shutdown produces everything the Queue accepted before it returns. On the
// way the Pump gives each tick its normalized instrument (Base, Quote) from
// package instrument: one place for every source, so exchange packages only
// decode.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/tick"
)

// Feed is a tick source. Run reads until ctx ends, reconnecting on its own;
// it returns nil on cancellation and an error only when it cannot go on.
type Feed interface {
	Run(ctx context.Context) error
}

// Publisher is the producer side the Pump feeds; *bus.Producer satisfies
// it. Produce returns once the record is the producer's responsibility (or
// acknowledged), or ctx ends.
type Publisher interface {
	Produce(ctx context.Context, t *tick.Tick) error
}

// Enqueuer is what a source hands its ticks to; *Queue is the real one.
// Enqueue returns nil once the tick is accepted, and may block until there
// is room. The tick is copied, so the caller may reuse it.
type Enqueuer interface {
	Enqueue(ctx context.Context, t *tick.Tick) error
}

// Metrics are the ingest collectors, shared by every source, queue and
// pump in a process. NewMetrics with the same registry returns collectors
// that are already registered, so each component can ask for them itself.
type Metrics struct {
	Received      *prometheus.CounterVec // exchange, symbol
	Accepted      *prometheus.CounterVec // exchange
	Handed        *prometheus.CounterVec // exchange, symbol
	Acked         *prometheus.CounterVec // exchange, symbol
	Refused       *prometheus.CounterVec // exchange, symbol
	Redelivered   *prometheus.CounterVec // exchange
	Dropped       *prometheus.CounterVec // exchange, symbol
	Malformed     *prometheus.CounterVec // exchange, reason
	Reconnects    *prometheus.CounterVec // exchange, reason
	DialErrors    *prometheus.CounterVec // exchange
	Connections   *prometheus.GaugeVec   // exchange
	ServerEvents  *prometheus.CounterVec // exchange, event
	PingsDropped  *prometheus.CounterVec // exchange
	QueueBlocked  *prometheus.CounterVec // exchange
	QueueWaiting  prometheus.Gauge
	QueueDepth    *QueueDepth
	QueueCapacity prometheus.Gauge
	ProduceErrors *prometheus.CounterVec // exchange
	Unproduced    *prometheus.CounterVec // exchange
	Unresolved    *prometheus.CounterVec // exchange
	// AckLatency is receive time to the broker's acknowledgement: the
	// part of a sink's end-to-end latency spent before any consumer.
	AckLatency prometheus.Histogram
}

// NewMetrics builds the ingest collectors and registers them with reg
// (none when reg is nil). Collectors reg already holds under the same name
// are reused rather than being an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tickflow_ingest_" + name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "tickflow_ingest_" + name, Help: help})
	}
	m := &Metrics{
		Received:    counter("ticks_received_total", "Valid ticks decoded from a source, by exchange and symbol.", "exchange", "symbol"),
		Accepted:    counter("ticks_accepted_total", "Ticks the ingest queue accepted from the sources, by exchange. Each ends up acknowledged or unproduced.", "exchange"),
		Handed:      counter("ticks_handed_total", "Accepted ticks handed to the bus producer (buffered, not yet acknowledged), by exchange and symbol; a tick produced again after a refusal counts once.", "exchange", "symbol"),
		Acked:       counter("ticks_acked_total", "Accepted ticks the broker acknowledged, by exchange and symbol.", "exchange", "symbol"),
		Refused:     counter("ticks_refused_total", "Deliveries the broker refused (or the client gave up on) and the pump produced again, by exchange and symbol.", "exchange", "symbol"),
		Dropped:     counter("dropped_total", "Ticks a live source dropped because the ingest queue stayed full (never accepted), by exchange and symbol.", "exchange", "symbol"),
		Redelivered: counter("ticks_redelivered_total", "Refused ticks handed to the producer again, by exchange.", "exchange"),
		Malformed:   counter("malformed_frames_total", "Frames skipped because they were malformed or unexpected, by exchange and reason.", "exchange", "reason"),
		Reconnects:  counter("reconnects_total", "Connections replaced, by exchange and why the old one ended.", "exchange", "reason"),
		DialErrors:  counter("dial_errors_total", "Failed connection attempts, by exchange.", "exchange"),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tickflow_ingest_connections", Help: "Open exchange connections, by exchange.",
		}, []string{"exchange"}),
		ServerEvents:  counter("server_events_total", "Control messages from an exchange (error frames, shutdown notices), by exchange and event.", "exchange", "event"),
		PingsDropped:  counter("pings_unanswered_total", "Server pings left unanswered to stay under the exchange's client message rate limit.", "exchange"),
		QueueBlocked:  counter("queue_blocked_seconds_total", "Time sources spent blocked on a full ingest queue, by exchange.", "exchange"),
		QueueWaiting:  gauge("queue_blocked_writers", "Sources blocked on a full ingest queue right now."),
		QueueDepth:    newQueueDepth(),
		QueueCapacity: gauge("queue_capacity", "Capacity of the ingest queues."),
		ProduceErrors: counter("produce_errors_total", "Produce calls that failed and were retried, by exchange.", "exchange"),
		Unproduced:    counter("unproduced_total", "Accepted ticks never acknowledged by the broker (not handed over, or still unacknowledged, when the shutdown drain deadline passed), by exchange.", "exchange"),
		Unresolved:    counter("ticks_unresolved_total", "Ticks published without a normalized instrument (base, quote) because their symbol did not resolve, by exchange.", "exchange"),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tickflow_ingest_ack_latency_seconds", Help: "Time from a tick's local receive time to the broker acknowledging it.",
			Buckets: []float64{0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
	}
	if reg == nil {
		return m, nil
	}
	err := errors.Join(
		register(reg, &m.Received), register(reg, &m.Accepted), register(reg, &m.Handed),
		register(reg, &m.Acked), register(reg, &m.Refused), register(reg, &m.Redelivered), register(reg, &m.Dropped), register(reg, &m.Malformed),
		register(reg, &m.Reconnects), register(reg, &m.DialErrors), register(reg, &m.Connections),
		register(reg, &m.ServerEvents), register(reg, &m.PingsDropped), register(reg, &m.QueueBlocked),
		register(reg, &m.QueueWaiting), register(reg, &m.QueueDepth), register(reg, &m.QueueCapacity),
		register(reg, &m.ProduceErrors), register(reg, &m.Unproduced), register(reg, &m.Unresolved),
		register(reg, &m.AckLatency),
	)
	if err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return m, nil
}

// QueueDepth reports the ticks waiting in every queue, read from the queues
// themselves when scraped. Counting with Inc on enqueue and Dec on dequeue
// races: the pump can take a tick before the source's Inc lands, and the
// gauge goes negative for a moment.
type QueueDepth struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	queues []*Queue
}

func newQueueDepth() *QueueDepth {
	return &QueueDepth{desc: prometheus.NewDesc("tickflow_ingest_queue_depth", "Ticks waiting in ingest queues for the producer.", nil, nil)}
}

func (d *QueueDepth) add(q *Queue) {
	d.mu.Lock()
	d.queues = append(d.queues, q)
	d.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (d *QueueDepth) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

// Collect implements prometheus.Collector.
func (d *QueueDepth) Collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	n := 0
	for _, q := range d.queues {
		n += q.Len()
	}
	d.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(n))
}

// register registers *c, or points *c at the collector reg already holds
// under that name.
func register[T prometheus.Collector](reg prometheus.Registerer, c *T) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		existing, ok := are.ExistingCollector.(T)
		if !ok {
			return fmt.Errorf("%T registered where %T was expected", are.ExistingCollector, *c)
		}
		*c = existing
		return nil
	}
	return err
}

// Sometimes rate-limits a log line: frames from a misbehaving exchange can
// arrive thousands a second, and the log must stay readable. The zero value
// allows one event per second on the real clock.
type Sometimes struct {
	Every time.Duration
	Clock clock.Clock

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Allow reports whether to log now, and how many events were suppressed
// since the last one that was allowed.
func (s *Sometimes) Allow() (ok bool, suppressed int) {
	every := s.Every
	if every <= 0 {
		every = time.Second
	}
	now := clock.OrReal(s.Clock).Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() && now.Sub(s.last) < every {
		s.suppressed++
		return false, 0
	}
	s.last = now
	n := s.suppressed
	s.suppressed = 0
	return true, n
}
