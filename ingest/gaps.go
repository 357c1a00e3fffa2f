package ingest

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/tick"
)

// GapSink takes the gaps a source detects (tick.Gap). Record must not
// block for long: sources call it from their read loops. A nil GapSink in
// Env means gaps are only counted.
type GapSink interface {
	RecordGap(ctx context.Context, g *tick.Gap)
}

// GapFunc adapts a function to GapSink.
type GapFunc func(ctx context.Context, g *tick.Gap)

// RecordGap calls fn.
func (fn GapFunc) RecordGap(ctx context.Context, g *tick.Gap) { fn(ctx, g) }

// NewGapCounter returns tickflow_ingest_gaps_total{exchange,reason},
// registered with reg (reused when reg already holds it; unregistered when
// reg is nil).
func NewGapCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tickflow_ingest_gaps_total",
		Help: "Gaps in a pair's data a source detected (a dropped connection, a sequence jump), by exchange and reason.",
	}, []string{"exchange", "reason"})
	if reg == nil {
		return c, nil
	}
	if err := register(reg, &c); err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return c, nil
}
