package app

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
)

// ingestParts are the sources, the bounded queue they feed and the pump
// that drains it into the producer.
type ingestParts struct {
	queue *ingest.Queue
	feeds []builtFeed
	pump  *ingest.Pump
}

type builtFeed struct {
	name string
	feed ingest.Feed
}

// buildIngest builds every enabled source on one bounded queue, the extra
// feeds the caller adds, and the pump. Each source hands its gaps, trades
// and quotes to one side-record publisher, and is registered on /readyz as
// source:<name>.
func (p *pipeline) buildIngest(extra []func(ingest.Enqueuer) ingest.Feed) error {
	log := p.log.With("component", "ingest")
	queue, err := ingest.NewQueue(p.cfg.Ingest.Queue, log, p.reg)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	sides := bus.NewSidePublisher(p.bus.producer, p.log.With("component", "sides"))
	in := &ingestParts{queue: queue}
	for _, sc := range p.cfg.Ingest.Sources {
		if !sc.Enabled {
			continue
		}
		spec, ok := ingest.Lookup(sc.Name)
		if !ok { // config decodes only registered sources
			return fmt.Errorf("ingest: source %s: not registered", sc.Name)
		}
		f, err := spec.New(ingest.Env{
			Name: sc.Name, Queue: queue, Logger: log, Metrics: p.reg, Clock: clock.Real, Gaps: sides, Trades: sides, Quotes: sides,
		}, sc.Settings)
		if err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		ready := func(context.Context) error { return nil }
		if r, ok := f.(ingest.Readier); ok {
			ready = r.Ready
		}
		p.hr.Check("source:"+sc.Name, ready)
		in.feeds = append(in.feeds, builtFeed{sc.Name, f})
		attrs := []any{"component", "source", "source", sc.Name}
		if d, ok := f.(ingest.Describer); ok {
			attrs = append(attrs, d.Describe()...)
		}
		p.log.Info("started", attrs...)
	}
	for i, mk := range extra {
		in.feeds = append(in.feeds, builtFeed{fmt.Sprintf("extra-%d", i), mk(queue)})
	}
	in.pump, err = ingest.NewPump(queue, p.bus.producer, ingest.PumpOptions{Logger: log, Metrics: p.reg})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	p.ingest = in
	return nil
}

// run runs the sources and the pump until ctx ends or a source fails.
func (in *ingestParts) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	sources, ictx := errgroup.WithContext(gctx)
	for _, f := range in.feeds {
		sources.Go(func() error { return f.feed.Run(ictx) })
	}
	g.Go(func() error {
		err := sources.Wait()
		in.queue.Close()
		return err
	})
	// The pump closes the queue when its context ends. Under ictx, that
	// context's error is already set when the sources see the queue
	// closed; under ctx the pump could wake on ctx.Done before the
	// cancellation reached ictx, and a source then took the closed queue
	// for a failure ("queue refused a tick: queue closed").
	g.Go(func() error { return in.pump.Run(ictx) })
	return g.Wait()
}
