package push

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	connections  prometheus.Gauge
	accepted     *prometheus.CounterVec // result: accepted, origin_rejected, limit_rejected
	disconnects  *prometheus.CounterVec // reason
	clientErrors *prometheus.CounterVec // code
	ticks        prometheus.Counter
	events       *prometheus.CounterVec // channel
	undecodable  *prometheus.CounterVec // channel
	enqueued     prometheus.Counter
	sent         prometheus.Counter
	conflated    prometheus.Counter
	latency      prometheus.Histogram
	redelivered  prometheus.Counter
	recoveries   *prometheus.CounterVec // result
	recovered    prometheus.Counter
	scanned      prometheus.Counter
	duplicates   prometheus.Counter
}

// recoveryResults are the values of tickflow_push_recoveries_total's
// result label: recovered, or why not.
var recoveryResults = []string{"recovered", "unavailable", "bad_position", "epoch", "no_position", "trimmed", "too_large", "busy", "error"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_push_connections", Help: "Open WebSocket connections.",
		}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_push_connections_total", Help: "WebSocket handshakes by result.",
		}, []string{"result"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_push_disconnects_total", Help: "Connections closed, by reason, counted when the close is decided.",
		}, []string{"reason"}),
		clientErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_push_client_errors_total", Help: "Error frames sent to clients, by code.",
		}, []string{"code"}),
		ticks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_push_ticks_total", Help: "Ticks handed to the hub.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_push_events_total", Help: "Alerts and signals published to the hub.",
		}, []string{"channel"}),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_push_events_undecodable_total", Help: "Records of the alert and signal topics skipped because they are not JSON.",
		}, []string{"channel"}),
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_push_enqueued_total", Help: "Messages queued to clients by the hub (one per client per message).",
		}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_push_frames_sent_total", Help: "Frames written to clients.",
		}),
		conflated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_push_conflated_ticks_total", Help: "Queued ticks replaced by a newer tick of the same pair for a slow client.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickflow_push_delivery_latency_seconds",
			Help:    "From a tick's receive time to its frame being written, sampled once per writer batch.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
	}
	m.redelivered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tickflow_push_redelivered_ticks_total", Help: "Ticks the runtime handed over again at or below an offset already fanned out; dropped.",
	})
	m.recoveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tickflow_push_recoveries_total", Help: "Subscribes that asked to resume from a position, by result (recovered, or why not).",
	}, []string{"result"})
	m.recovered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tickflow_push_recovered_ticks_total", Help: "Missed ticks replayed from the broker to resuming clients.",
	})
	m.scanned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tickflow_push_recovery_records_read_total", Help: "Broker records read to recover resuming clients (matching or not).",
	})
	m.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tickflow_push_recovery_duplicates_total", Help: "Live ticks not sent to a resumed client because its recovery already had them.",
	})
	for _, r := range recoveryResults {
		m.recoveries.WithLabelValues(r)
	}
	for _, r := range []string{"accepted", "origin_rejected", "limit_rejected"} {
		m.accepted.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.accepted, m.disconnects, m.clientErrors,
		m.ticks, m.events, m.undecodable, m.enqueued, m.sent, m.conflated, m.latency,
		m.redelivered, m.recoveries, m.recovered, m.scanned, m.duplicates} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("push: metrics: %w", err)
		}
	}
	return m, nil
}
