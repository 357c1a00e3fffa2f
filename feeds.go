package main

import (
	"context"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/binance"
	"github.com/tickflow/tickflow/ingest/sim"
)

type builtFeed struct {
	name string
	feed ingest.Feed
}

// buildFeeds builds every enabled source, each handing its ticks to q.
func buildFeeds(cfg config.Config, q ingest.Enqueuer, log *slog.Logger, reg prometheus.Registerer, hr *health.Registry) ([]builtFeed, error) {
	var out []builtFeed
	if b := cfg.Ingest.Binance; b.Enabled {
		f, err := binance.New(binance.Options{
			URL: b.URL, Symbols: b.Symbols, StreamsPerConn: b.StreamsPerConn, StaleAfter: b.StaleAfter,
			MaxLifetime: b.MaxLifetime, BackoffMin: b.BackoffMin, BackoffMax: b.BackoffMax,
			Queue: q, Logger: log.With("component", "ingest"), Metrics: reg,
		})
		if err != nil {
			return nil, err
		}
		hr.Check("source:binance", f.Ready)
		out = append(out, builtFeed{"binance", f})
		log.Info("started", "component", "source", "source", "binance", "url", strings.Join(f.URLs(), " "), "symbols", len(b.Symbols))
	}
	if s := cfg.Ingest.Sim; s.Enabled {
		f, err := sim.New(sim.Options{
			Symbols: s.Symbols, Interval: s.Interval, Seed: s.Seed,
			Queue: q, Logger: log.With("component", "ingest"), Metrics: reg,
		})
		if err != nil {
			return nil, err
		}
		hr.Check("source:sim", func(context.Context) error { return nil })
		out = append(out, builtFeed{"sim", f})
		log.Info("started", "component", "source", "source", "sim", "symbols", len(s.Symbols), "interval", s.Interval, "seed", f.Seed())
	}
	return out, nil
}
