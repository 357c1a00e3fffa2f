package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/topics"
)

type builtSink struct {
	name string
	// sink is a sinks.Sink, or the sinks.TradeSink of a sink that also
	// consumes trades (sinks.TradeConsumer), under its own runtime.
	sink interface{ Close(context.Context) error }
	rt   runner
}

// buildSinks builds every enabled, compiled-in sink and its runtime. A sink
// the config names but this build lacks, or one with no backend configured,
// is reported (log and /readyz) and skipped without consuming, so nothing
// is committed on its behalf. Until the supervisor runs them (and closes
// them at the end), a failed start closes what was built.
func (p *pipeline) buildSinks(context.Context) error {
	p.undo.push(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, b := range p.sinks {
			if err := b.sink.Close(ctx); err != nil {
				p.log.Warn("sink close after failed start", "component", "sink", "sink", b.name, "err", err)
			}
		}
		return nil
	})
	rm := bus.NewRuntimeMetrics(p.reg)
	for _, sc := range p.cfg.Sinks {
		built, err := p.buildSink(sc, rm)
		if err != nil {
			return err
		}
		p.sinks = append(p.sinks, built...)
	}
	return nil
}

// buildSink builds one sink section's sink and runtimes; none for a sink
// disabled, missing from this build or unavailable.
func (p *pipeline) buildSink(sc config.Sink, rm *bus.RuntimeMetrics) ([]builtSink, error) {
	log := p.log.With("component", "sink", "sink", sc.Name)
	if !sc.Enabled {
		return nil, nil
	}
	if !sc.Available {
		log.Warn("not available in this build; skipped")
		p.hr.Register("sink:"+sc.Name, false, "not available in this build")
		return nil, nil
	}
	spec, _ := sinks.Lookup(sc.Name)
	s, err := spec.New(sinks.Env{
		Name: sc.Name, Logger: log, Metrics: p.reg,
		Clock: clock.Real, Publisher: p.bus.producer, Follower: bus.Follower{Client: p.bus.client},
		Backend: p.backend.lookup,
	}, sc.Settings)
	if errors.Is(err, sinks.ErrUnavailable) {
		log.Warn("unavailable; not consuming", "reason", err)
		p.hr.Register("sink:"+sc.Name, false, err.Error())
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
	}
	// The sink says which instances see which ticks.
	sharing := spec.SharingOf(sc.Settings)
	group := sharing.Group(sc.Name, p.cfg.Bus.InstanceID)
	rt, err := bus.NewRuntime(runtimeConfig(p.cfg, p.bus.client, sc.Name, p.cfg.Bus.Topic, sharing, s, sc.Batch, p.log, rm, p.hr))
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
	}
	if r, ok := s.(sinks.Readier); ok {
		p.hr.Check("sink:"+sc.Name+":backend", r.Ready)
	}
	out := []builtSink{{name: sc.Name, sink: s, rt: rt}}
	if tc, ok := s.(sinks.TradeConsumer); ok {
		// Its trades: a second runtime on the trades topic in a group
		// of its own, with the sink's sharing and batch policy.
		tname := sc.Name + ".trades"
		tw := tc.TradeWriter()
		trt, err := bus.NewTradeRuntime(runtimeConfig(p.cfg, p.bus.client, tname, topics.Trades, sharing, tw, sc.Batch, p.log, rm, p.hr))
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", tname, err)
		}
		out = append(out, builtSink{name: tname, sink: tw, rt: trt})
	}
	attrs := []any{"component", "sink", "sink", sc.Name, "group", group, "sharing", sharing.String(), "batch_size", sc.Batch.Size, "max_wait", sc.Batch.MaxWait}
	if a, ok := s.(interface{ Addr() string }); ok {
		attrs = append(attrs, "addr", a.Addr())
	}
	p.log.Info("started", attrs...)
	return out, nil
}

// runtimeConfig is how a sink's runtime (its ticks', or its trades') is
// configured: consumer group by the sink's sharing, bus timeouts, batch
// policy, metrics and health.
func runtimeConfig[T bus.Record](cfg config.Config, cc bus.ClientConfig, name, topic string, sharing sinks.Sharing,
	sink bus.RecordSink[T], batch sinks.BatchPolicy, log *slog.Logger, rm *bus.RuntimeMetrics, hr *health.Registry) bus.RecordConfig[T] {
	return bus.RecordConfig[T]{
		Client: cc, Topic: topic, Group: sharing.Group(name, cfg.Bus.InstanceID), Exclusive: sharing == sinks.Exclusive,
		SessionTimeout: cfg.Bus.SessionTimeout, RebalanceTimeout: cfg.Bus.RebalanceTimeout,
		Name: name, Sink: sink, Batch: batch,
		Logger: log.With("component", "sink"), Metrics: rm, Health: hr,
	}
}
