package bus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/tick"
)

// RuntimeMetrics are the sink runtime's metrics, shared by every sink and
// labelled by sink name. Create one per registry.
type RuntimeMetrics struct {
	ticks        *prometheus.CounterVec
	trades       *prometheus.CounterVec
	batches      *prometheus.CounterVec
	decodeErrors *prometheus.CounterVec
	batchSize    *prometheus.HistogramVec
	writeSeconds *prometheus.HistogramVec
	lag          *prometheus.GaugeVec
	latency      *prometheus.HistogramVec
}

// NewRuntimeMetrics registers the runtime metrics with reg (nil: unregistered).
func NewRuntimeMetrics(reg prometheus.Registerer) *RuntimeMetrics {
	m := &RuntimeMetrics{
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_sink_ticks_total", Help: "Ticks written by each sink.",
		}, []string{"sink"}),
		trades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_sink_trades_total", Help: "Trades written by each sink's trade writer (sink=<sink>.trades).",
		}, []string{"sink"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_sink_batches_total", Help: "WriteBatch calls by sink and result.",
		}, []string{"sink", "result"}),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_sink_decode_errors_total", Help: "Records that were not valid ticks (or, for a trade writer, trades), skipped.",
		}, []string{"sink"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tickflow_sink_batch_size", Help: "Records (ticks, or trades for a trade writer) per successful batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}, []string{"sink"}),
		writeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tickflow_sink_write_seconds", Help: "Duration of successful WriteBatch calls.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"sink"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tickflow_sink_consumer_lag", Help: "Records the partitions hold beyond what the sink has fetched, summed; refreshed from the broker while a batch keeps failing, so it grows during an outage.",
		}, []string{"sink"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tickflow_sink_latency_seconds",
			Help:    "End-to-end latency when a sink finished writing a tick (or a trade writer a trade), from the exchange event time (from=event) or local receive time (from=receive).",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"sink", "from"}),
	}
	if reg != nil {
		reg.MustRegister(m.ticks, m.trades, m.batches, m.decodeErrors, m.batchSize, m.writeSeconds, m.lag, m.latency)
	}
	return m
}

type runtimeSinkMetrics struct {
	ticks, decodeErrors       prometheus.Counter
	batches                   *prometheus.CounterVec
	batchSize, writeSeconds   prometheus.Observer
	latencyEvent, latencyRecv prometheus.Observer
	lag                       prometheus.Gauge
}

// forSink is the metrics of one sink's runtime; records written count in
// tickflow_sink_ticks_total or tickflow_sink_trades_total by their kind.
func forSink[T Record](m *RuntimeMetrics, name string) runtimeSinkMetrics {
	written := m.ticks
	if _, trades := any((*T)(nil)).(*tick.Trade); trades {
		written = m.trades
	}
	return runtimeSinkMetrics{
		ticks:        written.WithLabelValues(name),
		decodeErrors: m.decodeErrors.WithLabelValues(name),
		batches:      m.batches.MustCurryWith(prometheus.Labels{"sink": name}),
		batchSize:    m.batchSize.WithLabelValues(name),
		writeSeconds: m.writeSeconds.WithLabelValues(name),
		latencyEvent: m.latency.WithLabelValues(name, "event"),
		latencyRecv:  m.latency.WithLabelValues(name, "receive"),
		lag:          m.lag.WithLabelValues(name),
	}
}
