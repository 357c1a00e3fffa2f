package wsfeed

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the manager's own, beside ingest.Metrics.
type metrics struct {
	rotations  *prometheus.CounterVec
	duplicates *prometheus.CounterVec
}

// newMetrics registers the manager's metrics with reg, reusing those
// already there (several feeds share one registry); nil leaves them
// unregistered.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_ingest_rotations_total",
			Help: "Make-before-break connection rotations, by exchange, reason (max_lifetime, server_shutdown, server_notice) and result: done (the new connection took over), failed (it did not come up or deliver; the old one stayed), old_ended_first (the old one ended before the new one took over: a reconnect, with its gaps).",
		}, []string{"exchange", "reason", "result"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_ingest_duplicates_dropped_total",
			Help: "Records dropped because another connection of the same shard had already delivered them or a later one (the overlap of a rotation), by exchange and kind (tick, trade, quote). Dropped ticks are still counted in ticks_received_total.",
		}, []string{"exchange", "kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []**prometheus.CounterVec{&m.rotations, &m.duplicates} {
		err := reg.Register(*c)
		var are prometheus.AlreadyRegisteredError
		switch {
		case errors.As(err, &are):
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("wsfeed metrics: %T registered where a counter vector was expected", are.ExistingCollector)
			}
			*c = existing
		case err != nil:
			return nil, fmt.Errorf("wsfeed metrics: %w", err)
		}
	}
	return m, nil
}
