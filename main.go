// Command tickflow runs the whole market-data pipeline from one binary and
// one YAML file: exchange ingestors → Kafka (embedded or external) → sinks,
// each in its own consumer group, with the REST API and web page on top.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/ingest"
	_ "github.com/tickflow/tickflow/ingest/all" // the compiled-in sources
	"github.com/tickflow/tickflow/internal/events"
	"github.com/tickflow/tickflow/sinks"
	_ "github.com/tickflow/tickflow/sinks/all" // the compiled-in sinks
	"github.com/tickflow/tickflow/tick"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// Topics tickflow publishes besides the tick topic.
var sideTopics = []string{"risk.alerts", "strategy.signals", tick.GapTopic, ingest.TradeTopic, tick.QuoteTopic}

// run is main without the process: it returns the exit code, so tests can
// run tickflow in-process.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "replay" {
		return runReplay(ctx, args[1:], stderr, getenv)
	}
	if len(args) > 0 && args[0] == "backtest" {
		return runBacktest(ctx, args[1:], os.Stdout, stderr, getenv)
	}
	fs := flag.NewFlagSet("tickflow", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.yaml", "path to the YAML config file")
	if len(args) > 0 && args[0] == "bench" {
		return runBench(ctx, args[1:], stderr, getenv)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "tickflow: %v\n", err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	if err := start(ctx, cfg, log); err != nil {
		log.Error("tickflow stopped with an error", "err", err)
		return 1
	}
	log.Info("tickflow stopped cleanly")
	return 0
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// start runs every component until ctx ends or one fails, then shuts down in
// order: ingest stops and the producer flushes what it accepted, each sink
// writes and commits its batch in hand, and the broker closes last.
//
// hooks (the bench only) add load sources and see the metrics registry.
func start(ctx context.Context, cfg config.Config, log *slog.Logger, hooks ...startHook) (err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, h := range hooks {
		h.registry(reg)
	}
	hr := health.New()
	log.Info("instance", "instance_id", cfg.Bus.InstanceID)

	// Bus: the embedded broker unless external brokers are configured.
	cc, err := clientConfig(cfg.Bus, log)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	brokerErr := func() error { return nil }
	if len(cfg.Bus.Brokers) == 0 {
		emb, err := bus.StartEmbedded(bus.EmbeddedConfig{
			Listen: cfg.Bus.Listen, DataDir: cfg.Bus.DataDir, SyncWrites: cfg.Bus.SyncWrites, Logger: log, Metrics: reg,
			// A full or failing data dir makes the broker refuse produce
			// requests retriably: /readyz says so until it recovers.
			OnStorage: func(err error) { hr.Set("broker", err) },
		})
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		defer func() {
			emb.Close()
			log.Info("broker closed", "component", "broker")
		}()
		cc.Brokers = emb.Addrs()
		brokerErr = emb.StorageErr
		log.Info("started", "component", "broker", "kind", "embedded", "addr", strings.Join(cc.Brokers, ","), "data_dir", cfg.Bus.DataDir)
	} else {
		log.Info("using external Kafka", "component", "broker", "brokers", strings.Join(cc.Brokers, ","))
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range append([]string{cfg.Bus.Topic}, sideTopics...) {
		if err := bus.EnsureTopic(setupCtx, cc, t, int32(cfg.Bus.Partitions), int16(cfg.Bus.Replication)); err != nil {
			return fmt.Errorf("broker: topic %s: %w", t, err)
		}
	}
	// bus.partitions raised in the file grows the tick topic (only it: the
	// side topics' followers would not see new partitions until restart).
	if cfg.Bus.PartitionsSet {
		if err := bus.GrowTopic(setupCtx, cc, cfg.Bus.Topic, int32(cfg.Bus.Partitions)); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	hr.Set("broker", brokerErr())

	producer, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: cfg.Bus.Topic, Linger: cfg.Bus.Linger, Compression: cfg.Bus.Compression, Logger: log.With("component", "producer"), Metrics: reg})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if ferr := producer.Close(fctx); ferr != nil {
			log.Error("producer: flush at shutdown incomplete", "component", "producer", "err", ferr)
			err = errors.Join(err, fmt.Errorf("producer flush: %w", ferr))
		}
	}()

	bk, err := openBackends(cfg, log, reg, hr)
	if err != nil {
		return err
	}
	defer bk.close(log)
	built, err := buildSinks(cfg, cc, log, reg, hr, producer, bk)
	if err != nil {
		return err
	}
	// Until the runtimes run (and close their sinks at the end), a failed
	// start must close what was built.
	running := false
	defer func() {
		if running {
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, b := range built {
			if cerr := b.sink.Close(cctx); cerr != nil {
				log.Warn("sink close after failed start", "component", "sink", "sink", b.name, "err", cerr)
			}
		}
	}()

	// Ingest: every enabled source feeds one bounded queue drained by the pump.
	queue, err := ingest.NewQueue(cfg.Ingest.Queue, log.With("component", "ingest"), reg)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	gaps, err := newGapPublisher(producer, log, reg)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	sides := newTradePublisher(producer, log)
	feeds, err := buildFeeds(cfg, queue, gaps, sides, sides, log, reg, hr)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	pump, err := ingest.NewPump(queue, producer, ingest.PumpOptions{Logger: log.With("component", "ingest"), Metrics: reg})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	apiOpts := api.Options{
		Listen: cfg.API.Listen, Logger: log.With("component", "api"), Health: hr, Gatherer: reg,
		ShutdownTimeout: cfg.API.ShutdownTimeout,
	}
	fd, err := newFeeds(cc, log, reg, built)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	bk.apiReaders(&apiOpts, fd, built)
	gapFeed, err := events.NewGapFeed(bus.Follower{Client: cc}, recentCapacity,
		events.FeedOptions{Logger: log.With("component", "api"), Metrics: reg, Clock: clock.Real})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	apiOpts.Gaps = gapFeed
	tradeFeed, err := events.NewTradeFeed(bus.Follower{Client: cc}, recentTrades,
		events.FeedOptions{Logger: log.With("component", "api"), Metrics: reg, Clock: clock.Real})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	apiOpts.Trades = tradeFeed
	quoteFeed, err := events.NewQuoteFeed(bus.Follower{Client: cc}, recentQuotes,
		events.FeedOptions{Logger: log.With("component", "api"), Metrics: reg, Clock: clock.Real})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	apiOpts.Quotes = quoteFeed
	srv := api.New(apiOpts)
	if err := srv.Listen(); err != nil {
		return err
	}
	log.Info("started", "component", "api", "addr", "http://"+srv.Addr())

	// Sinks and the API run until ctx ends. Ingest runs under its own
	// context so that, at shutdown, the pump drains the queue into the
	// producer before anything downstream stops.
	g, gctx := errgroup.WithContext(ctx)
	running = true
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return fd.run(gctx) })
	g.Go(func() error { return gapFeed.Run(gctx) })
	g.Go(func() error { return tradeFeed.Run(gctx) })
	g.Go(func() error { return quoteFeed.Run(gctx) })
	g.Go(func() error { return gaps.run(gctx) })
	g.Go(func() error { return runSinks(gctx, built) })
	ig, ictx := errgroup.WithContext(gctx)
	for _, f := range feeds {
		ig.Go(func() error { return f.feed.Run(ictx) })
	}
	for _, h := range hooks {
		ig.Go(func() error { return h.feed(queue).Run(ictx) })
	}
	g.Go(func() error {
		err := ig.Wait()
		queue.Close()
		return err
	})
	// The pump closes the queue when its context ends. Under ictx, that
	// context's error is already set when the sources see the queue
	// closed; under gctx the pump could wake on gctx.Done before the
	// cancellation reached ictx, and a source then took the closed queue
	// for a failure ("queue refused a tick: queue closed").
	g.Go(func() error { return pump.Run(ictx) })
	err = g.Wait()
	it := ingestTotals(reg)
	log.Info("ingest summary", "component", "ingest", "received", it.received, "accepted", it.accepted,
		"handed", it.handed, "acked", it.acked, "refused", it.refused, "unproduced", it.unproduced)
	return err
}

// ingestSummary is the shutdown account of this run's ticks: decoded from
// the sources (received), taken by the queue (accepted), handed to the
// producer (handed, each tick once), acknowledged by the broker (acked),
// refusals produced again (refused), and accepted but never acknowledged
// (unproduced). accepted == acked + unproduced once the pump has returned.
type ingestSummary struct {
	received, accepted, handed, acked, refused, unproduced int64
}

// ingestTotals sums the ingest counters, for the shutdown summary.
func ingestTotals(g prometheus.Gatherer) (s ingestSummary) {
	mfs, err := g.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		var dst *int64
		switch mf.GetName() {
		case "tickflow_ingest_ticks_received_total":
			dst = &s.received
		case "tickflow_ingest_ticks_accepted_total":
			dst = &s.accepted
		case "tickflow_ingest_ticks_handed_total":
			dst = &s.handed
		case "tickflow_ingest_ticks_acked_total":
			dst = &s.acked
		case "tickflow_ingest_ticks_refused_total":
			dst = &s.refused
		case "tickflow_ingest_unproduced_total":
			dst = &s.unproduced
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += int64(m.GetCounter().GetValue())
		}
	}
	return s
}

func clientConfig(b config.Bus, log *slog.Logger) (bus.ClientConfig, error) {
	cc := bus.ClientConfig{
		// franz-go logs every group step at info; keep its warnings only.
		Brokers: b.Brokers, ClientID: b.ClientID, Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "kafka"),
		SASL: bus.SASL{Mechanism: b.SASL.Mechanism, Username: b.SASL.Username, Password: b.SASL.Password},
	}
	if b.TLS.Enabled {
		tc, err := bus.TLSFiles(b.TLS.CAFile, b.TLS.CertFile, b.TLS.KeyFile, b.TLS.ServerName, b.TLS.InsecureSkipVerify)
		if err != nil {
			return cc, err
		}
		cc.TLS = tc
	}
	return cc, nil
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
// is committed on its behalf.
func buildSinks(cfg config.Config, cc bus.ClientConfig, log *slog.Logger, reg *prometheus.Registry, hr *health.Registry, pub sinks.Publisher, bk *backends) ([]builtSink, error) {
	rm := bus.NewRuntimeMetrics(reg)
	var out []builtSink
	for _, sc := range cfg.Sinks {
		slog := log.With("component", "sink", "sink", sc.Name)
		if !sc.Enabled {
			continue
		}
		if !sc.Available {
			slog.Warn("not available in this build; skipped")
			hr.Register("sink:"+sc.Name, false, "not available in this build")
			continue
		}
		spec, _ := sinks.Lookup(sc.Name)
		s, err := spec.New(sinks.Env{
			Name: sc.Name, Logger: slog, Metrics: reg,
			Clock: clock.Real, Publisher: pub, Follower: bus.Follower{Client: cc},
			Backend: bk.lookup,
		}, sc.Settings)
		if errors.Is(err, sinks.ErrUnavailable) {
			slog.Warn("unavailable; not consuming", "reason", err)
			hr.Register("sink:"+sc.Name, false, err.Error())
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		// The sink says which instances see which ticks (STYLE lesson 20).
		sharing := spec.SharingOf(sc.Settings)
		group := sharing.Group(sc.Name, cfg.Bus.InstanceID)
		rt, err := bus.NewRuntime(runtimeConfig(cfg, cc, sc.Name, cfg.Bus.Topic, sharing, s, sc.Batch, log, rm, hr))
		if err != nil {
			return nil, fmt.Errorf("sink %s: %w", sc.Name, err)
		}
		if r, ok := s.(sinks.Readier); ok {
			hr.Check("sink:"+sc.Name+":backend", r.Ready)
		}
		out = append(out, builtSink{name: sc.Name, sink: s, rt: rt})
		if tc, ok := s.(sinks.TradeConsumer); ok {
			// Its trades: a second runtime on the trades topic in a group
			// of its own, with the sink's sharing and batch policy.
			tname := sc.Name + ".trades"
			tw := tc.TradeWriter()
			trt, err := bus.NewTradeRuntime(runtimeConfig(cfg, cc, tname, ingest.TradeTopic, sharing, tw, sc.Batch, log, rm, hr))
			if err != nil {
				return nil, fmt.Errorf("sink %s: %w", tname, err)
			}
			out = append(out, builtSink{name: tname, sink: tw, rt: trt})
		}
		attrs := []any{"component", "sink", "sink", sc.Name, "group", group, "sharing", sharing.String(), "batch_size", sc.Batch.Size, "max_wait", sc.Batch.MaxWait}
		if a, ok := s.(interface{ Addr() string }); ok {
			attrs = append(attrs, "addr", a.Addr())
		}
		log.Info("started", attrs...)
	}
	return out, nil
}

// minLevel raises a handler's threshold for a chatty library.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
