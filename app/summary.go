package app

import "github.com/prometheus/client_golang/prometheus"

// ingestSummary is the shutdown account of this run's ticks: decoded from
// the sources (received), taken by the queue (accepted), handed to the
// producer (handed, each tick once), acknowledged by the broker (acked),
// refusals produced again (refused), and accepted but never acknowledged
// (unproduced). accepted == acked + unproduced once the pump has returned.
type ingestSummary struct {
	received, accepted, handed, acked, refused, unproduced int64
}

// logIngestSummary logs the account once everything has stopped.
func (p *pipeline) logIngestSummary() {
	it := ingestTotals(p.reg)
	p.log.Info("ingest summary", "component", "ingest", "received", it.received, "accepted", it.accepted,
		"handed", it.handed, "acked", it.acked, "refused", it.refused, "unproduced", it.unproduced)
}

// ingestTotals sums the ingest counters, for the shutdown summary.
func ingestTotals(g prometheus.Gatherer) (s ingestSummary) {
	mfs, err := g.Gather()
	if err != nil {
		return s
	}
	counters := map[string]*int64{
		"tickflow_ingest_ticks_received_total": &s.received,
		"tickflow_ingest_ticks_accepted_total": &s.accepted,
		"tickflow_ingest_ticks_handed_total":   &s.handed,
		"tickflow_ingest_ticks_acked_total":    &s.acked,
		"tickflow_ingest_ticks_refused_total":  &s.refused,
		"tickflow_ingest_unproduced_total":     &s.unproduced,
	}
	for _, mf := range mfs {
		dst, ok := counters[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += int64(m.GetCounter().GetValue())
		}
	}
	return s
}
