package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/ingest"
)

type builtFeed struct {
	name string
	feed ingest.Feed
}

// buildFeeds builds every enabled source, each handing its ticks to q and
// its gaps, trades and quotes to gaps, trades and quotes, and
// registers each on /readyz as source:<name>.
func buildFeeds(cfg config.Config, q ingest.Enqueuer, gaps ingest.GapSink, trades ingest.TradeSink, quotes ingest.QuoteSink, log *slog.Logger, reg prometheus.Registerer, hr *health.Registry) ([]builtFeed, error) {
	var out []builtFeed
	for _, sc := range cfg.Ingest.Sources {
		if !sc.Enabled {
			continue
		}
		spec, ok := ingest.Lookup(sc.Name)
		if !ok { // config decodes only registered sources
			return nil, fmt.Errorf("source %s: not registered", sc.Name)
		}
		f, err := spec.New(ingest.Env{
			Name: sc.Name, Queue: q, Logger: log.With("component", "ingest"), Metrics: reg, Clock: clock.Real, Gaps: gaps, Trades: trades, Quotes: quotes,
		}, sc.Settings)
		if err != nil {
			return nil, err
		}
		ready := func(context.Context) error { return nil }
		if r, ok := f.(ingest.Readier); ok {
			ready = r.Ready
		}
		hr.Check("source:"+sc.Name, ready)
		out = append(out, builtFeed{sc.Name, f})
		attrs := []any{"component", "source", "source", sc.Name}
		if d, ok := f.(ingest.Describer); ok {
			attrs = append(attrs, d.Describe()...)
		}
		log.Info("started", attrs...)
	}
	return out, nil
}
