package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tickflow/tickflow/app"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/replay"
)

const replayUsage = `usage: tickflow replay -topic T [flags]

Republishes stored ticks into topic T, keyed exchange:symbol as live ticks
are, oldest first: from the history store when sinks.store.clickhouse.url
is configured, else from the broker's retained log of bus.topic. With no
bus.brokers it connects to the embedded broker of a running tickflow at
bus.listen.

`

// runReplay is "tickflow replay": it returns the exit code (2 for bad
// flags or config, 1 when the replay failed).
func runReplay(ctx context.Context, args []string, io IO) int {
	stderr, getenv := io.Stderr, io.Getenv
	fs := flag.NewFlagSet("tickflow replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	var (
		path      = fs.String("config", "config.yaml", "path to the YAML config file")
		topic     = fs.String("topic", "", "topic to publish into (required); created if missing")
		from      = fs.String("from", "", "first event time: RFC 3339 or Unix ms (default: the oldest stored)")
		to        = fs.String("to", "", "last event time, inclusive: RFC 3339 or Unix ms (default: the newest)")
		exchanges = fs.String("exchange", "", "comma-separated exchanges to keep (default: all)")
		symbols   = fs.String("symbol", "", "comma-separated symbols to keep (default: all)")
		speed     = fs.String("speed", "1", `1 keeps the recorded gaps, N replays N times faster, "max" as fast as the broker takes them`)
		source    = fs.String("source", "", `"store" or "log" (default: store when configured, else log)`)
		allowLive = fs.Bool("allow-live-topic", false, "allow publishing into bus.topic, where live consumers will take replayed ticks as new")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tickflow replay: "+format+"\n", a...)
		return 2
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return fail("%v", err)
	}
	if *topic == "" {
		return fail("-topic is required")
	}
	if *topic == cfg.Bus.Topic && !*allowLive {
		return fail("-topic %s is the live tick topic (bus.topic): every sink would take replayed ticks as new; pass -allow-live-topic if that is what you want", *topic)
	}
	fromT, err := parseTime(*from)
	if err != nil {
		return fail("-from: %v", err)
	}
	toT, err := parseTime(*to)
	if err != nil {
		return fail("-to: %v", err)
	}
	if !fromT.IsZero() && !toT.IsZero() && toT.Before(fromT) {
		return fail("-to %s is before -from %s", *to, *from)
	}
	var x float64
	switch *speed {
	case "max":
	default:
		if x, err = strconv.ParseFloat(strings.TrimSuffix(*speed, "x"), 64); err != nil || x <= 0 {
			return fail(`-speed %q: want a number > 0 or "max"`, *speed)
		}
	}
	exs, syms := splitList(*exchanges, strings.ToLower), splitList(*symbols, strings.ToUpper)

	log := app.NewLogger(cfg.Log, stderr)
	cc, err := app.ClientConfig(cfg.Bus, log)
	if err != nil {
		return fail("bus: %v", err)
	}
	if len(cc.Brokers) == 0 {
		cc.Brokers = []string{cfg.Bus.Listen}
	}
	storeCfg, err := pickSource(source, cfg)
	if err != nil {
		return fail("%v", err)
	}
	src, closeSrc, err := replaySource(*source, cfg, cc, storeCfg, log, fromT, toT, exs, syms, 0)
	if err != nil {
		return fail("%v", err)
	}
	defer closeSrc()

	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.EnsureTopic(setup, cc, *topic, int32(cfg.Bus.Partitions), int16(cfg.Bus.Replication)); err != nil {
		fmt.Fprintf(stderr, "tickflow replay: topic %s: %v\n", *topic, err)
		return 1
	}
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: *topic, Linger: cfg.Bus.Linger, Compression: cfg.Bus.Compression, Logger: log.With("component", "producer")})
	if err != nil {
		fmt.Fprintf(stderr, "tickflow replay: %v\n", err)
		return 1
	}
	defer prod.Close(context.Background())
	log.Info("replaying", "source", *source, "topic", *topic, "speed", *speed, "from", *from, "to", *to)
	st, err := replay.Run(ctx, src, prod, replay.Options{Speed: x, Progress: stderr})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("replay failed", "err", err, "ticks", st.Ticks)
		return 1
	}
	log.Info("replay done", "ticks", st.Ticks, "elapsed", st.Elapsed.Round(time.Millisecond), "behind_schedule_max", st.BehindSchedule,
		"stopped", errors.Is(err, context.Canceled))
	return 0
}
