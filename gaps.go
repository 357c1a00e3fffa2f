package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// gapPublisher is the sources' ingest.GapSink: it publishes each gap on
// tick.GapTopic through the producer, off the sources' read loops. Gaps
// are few (one per pair per reconnect); if the broker is so slow that
// gapBuffer of them wait, further ones are dropped and counted rather than
// stalling a read loop.
type gapPublisher struct {
	pub     sinks.Publisher
	log     *slog.Logger
	ch      chan tick.Gap
	dropped prometheus.Counter
	failed  prometheus.Counter
}

const gapBuffer = 1024

func newGapPublisher(pub sinks.Publisher, log *slog.Logger, reg prometheus.Registerer) (*gapPublisher, error) {
	p := &gapPublisher{
		pub: pub, log: log.With("component", "gaps"), ch: make(chan tick.Gap, gapBuffer),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tickflow_ingest_gaps_dropped_total",
			Help: "Gap records not published because too many were waiting for the broker."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "tickflow_ingest_gaps_publish_errors_total",
			Help: "Gap records the broker refused."}),
	}
	for _, c := range []prometheus.Collector{p.dropped, p.failed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

var _ ingest.GapSink = (*gapPublisher)(nil)

// RecordGap queues g for publishing; it never blocks.
func (p *gapPublisher) RecordGap(_ context.Context, g *tick.Gap) {
	select {
	case p.ch <- *g:
	default:
		p.dropped.Inc()
	}
}

// run publishes queued gaps until ctx ends.
func (p *gapPublisher) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case g := <-p.ch:
			v, err := tick.MarshalGap(&g)
			if err == nil {
				err = p.pub.Publish(ctx, tick.GapTopic, []byte(g.Key()), v)
			}
			if err != nil && ctx.Err() == nil {
				p.failed.Inc()
				p.log.Warn("gap not published", "exchange", g.Exchange, "symbol", g.Symbol, "err", err)
			}
		}
	}
}
