// Package app is tickflow's wiring: from a loaded config it starts the
// broker (embedded unless external brokers are configured) and the topics,
// the producer, the backends, every enabled sink with its consumer runtime,
// the sources and the API; runs them until the context ends or one fails;
// and stops them in order. The command line (package cli), the load
// command and the end-to-end tests all start the pipeline through Run, so
// there is one copy of the wiring.
//
// No sink or source is named here: they come from their registries
// (sinks/all, ingest/all), and what the API reads comes from the backends
// the config describes and from topics.
package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/ingest"
	_ "github.com/tickflow/tickflow/ingest/all" // the compiled-in sources
	_ "github.com/tickflow/tickflow/sinks/all"  // the compiled-in sinks
)

// Options are what a caller adds to the config's pipeline.
type Options struct {
	// Logger receives every component's log; nil discards.
	Logger *slog.Logger
	// Registry is the metrics registry the run registers into, so the
	// caller can read it (the load command); nil makes a fresh one.
	Registry *prometheus.Registry
	// Feeds are extra sources run beside the configured ones, each built
	// on the ingest queue (the load command's generator).
	Feeds []func(ingest.Enqueuer) ingest.Feed
}

// pipeline is one run's parts, built in order by Run's steps; undo holds
// what must be released, last built first.
type pipeline struct {
	cfg  config.Config
	log  *slog.Logger
	reg  *prometheus.Registry
	hr   *health.Registry
	undo cleanup

	bus     *busParts
	backend *backends
	sinks   []builtSink
	ingest  *ingestParts
	api     *apiParts
}

// Run runs every component of cfg until ctx ends or one fails, then shuts
// down in order: ingest stops and the producer flushes what it accepted,
// each sink writes and commits its batch in hand, the API stops, the
// backends close and the broker closes last. A part that fails to start
// stops the run with an error naming it, after releasing what was built.
func Run(ctx context.Context, cfg config.Config, o Options) (err error) {
	p := &pipeline{cfg: cfg, log: o.Logger, reg: o.Registry, hr: health.New()}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.reg == nil {
		p.reg = prometheus.NewRegistry()
	}
	p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() { err = errors.Join(err, p.undo.run()) }()
	p.log.Info("instance", "instance_id", cfg.Bus.InstanceID)

	steps := []func(context.Context) error{
		p.startBus,
		p.openBackends,
		p.buildSinks,
		func(context.Context) error { return p.buildIngest(o.Feeds) },
		p.startAPI,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	err = p.run(ctx)
	p.logIngestSummary()
	return err
}

// run runs the built parts until ctx ends or one fails. Sinks and the API
// run under gctx; ingest under its own context below it, so that at
// shutdown the pump drains the queue into the producer before anything
// downstream stops.
func (p *pipeline) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	p.api.run(g, gctx)
	built := p.sinks
	p.sinks = nil // the supervisor closes them from here on
	g.Go(func() error { return runSinks(gctx, built) })
	g.Go(func() error { return p.ingest.run(gctx) })
	return g.Wait()
}

// cleanup is a stack of release functions, run last-pushed first; each
// may return an error to report.
type cleanup []func() error

func (c *cleanup) push(fn func() error) { *c = append(*c, fn) }

func (c *cleanup) run() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		errs = append(errs, (*c)[i]())
	}
	*c = nil
	return errors.Join(errs...)
}
