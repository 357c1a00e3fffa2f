package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tickflow/tickflow/app"
	"github.com/tickflow/tickflow/backtest"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/sinks/strategy"
)

const backtestUsage = `usage: tickflow backtest [flags]

Runs the strategies of sinks.strategy.strategies over stored ticks, with the
live engine's code and paper execution, and writes a JSON report (trades,
PnL, max drawdown, win rate, exposure, equity curve, trade list, signals)
to -o or stdout, a summary to stderr and, with -html, a page with the
equity curve and the trades on the price chart. Ticks come from the
history store when sinks.store.clickhouse.url is configured, else from the
broker's retained log of bus.topic (with no bus.brokers: the embedded
broker of a running tickflow at bus.listen).

`

// runBacktest is "tickflow backtest": it returns the exit code (2 for bad
// flags or config, 1 when the backtest failed).
func runBacktest(ctx context.Context, args []string, cio IO) int {
	stdout, stderr, getenv := cio.Stdout, cio.Stderr, cio.Getenv
	fs := flag.NewFlagSet("tickflow backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backtestUsage); fs.PrintDefaults() }
	var (
		path       = fs.String("config", "config.yaml", "path to the YAML config file")
		from       = fs.String("from", "", "first event time: RFC 3339 or Unix ms (default: the oldest stored)")
		to         = fs.String("to", "", "last event time, inclusive: RFC 3339 or Unix ms (default: the newest)")
		exchanges  = fs.String("exchange", "", "comma-separated exchanges to read (default: the strategies' exchanges)")
		symbols    = fs.String("symbol", "", "comma-separated symbols to read (default: the strategies' symbols)")
		source     = fs.String("source", "", `"store" or "log" (default: store when configured, else log)`)
		strategies = fs.String("strategy", "", "comma-separated strategy names to run (default: all configured)")
		out        = fs.String("o", "", "write the JSON report to this file (default: stdout)")
		html       = fs.String("html", "", "also write a self-contained page with the equity curves and trades to this file")
		step       = fs.Duration("step", time.Minute, "spacing of the equity curve and price bars in the report")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "tickflow backtest: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		return fail("%v", err)
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
	if *step < time.Second {
		return fail("-step %s: must be at least 1s", *step)
	}
	sc, ok := cfg.Sink("strategy")
	if !ok || !sc.Available {
		return fail("the strategy engine is not in this build")
	}
	scfg := sc.Settings.(*strategy.Config)
	names := splitList(*strategies, func(s string) string { return s })
	exs, syms := splitList(*exchanges, strings.ToLower), splitList(*symbols, strings.ToUpper)
	for _, n := range names {
		if !slices.ContainsFunc(scfg.Strategies, func(e strategy.Entry) bool { return e.Name == n }) {
			return fail("-strategy %q: no such strategy in sinks.strategy.strategies", n)
		}
	}
	// By default read only the pairs some selected strategy watches.
	for _, e := range scfg.Strategies {
		if len(names) > 0 && !slices.Contains(names, e.Name) {
			continue
		}
		if *exchanges == "" && !slices.Contains(exs, strings.ToLower(e.Exchange)) {
			exs = append(exs, strings.ToLower(e.Exchange))
		}
		if *symbols == "" && !slices.Contains(syms, strings.ToUpper(e.Symbol)) {
			syms = append(syms, strings.ToUpper(e.Symbol))
		}
	}
	storeCfg, err := pickSource(source, cfg)
	if err != nil {
		return fail("%v", err)
	}
	log := app.NewLogger(cfg.Log, stderr)
	cc, err := app.ClientConfig(cfg.Bus, log)
	if err != nil {
		return fail("bus: %v", err)
	}
	if len(cc.Brokers) == 0 {
		cc.Brokers = []string{cfg.Bus.Listen}
	}
	// Pages of 50 000 ticks (about 20 MB): each page of the store's scan
	// costs a query over the rest of the range, so small pages make long
	// ranges slow (docs/PERFORMANCE.md).
	src, closeSrc, err := replaySource(*source, cfg, cc, storeCfg, log, fromT, toT, exs, syms, 50_000)
	if err != nil {
		return fail("%v", err)
	}
	defer closeSrc()

	rep, st, err := backtest.Run(ctx, scfg, src, backtest.Options{
		Strategies: names, Step: *step, From: fromT, To: toT, Source: *source, Progress: stderr,
	})
	if err != nil {
		if errors.Is(err, backtest.ErrNoStrategies) {
			return fail("%v", err)
		}
		fmt.Fprintf(stderr, "tickflow backtest: %v\n", err)
		return 1
	}
	if err := writeFile(*out, stdout, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(rep)
	}); err != nil {
		fmt.Fprintf(stderr, "tickflow backtest: -o: %v\n", err)
		return 1
	}
	if *html != "" {
		if err := writeFile(*html, nil, func(w io.Writer) error { return backtest.WriteHTML(w, rep) }); err != nil {
			fmt.Fprintf(stderr, "tickflow backtest: -html: %v\n", err)
			return 1
		}
	}
	summary(stderr, rep, st)
	return 0
}

// writeFile writes to path, or to def when path is empty.
func writeFile(path string, def io.Writer, write func(io.Writer) error) error {
	if path == "" {
		bw := bufio.NewWriter(def)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summary is the human report on stderr.
func summary(w io.Writer, rep *backtest.Report, st backtest.Stats) {
	rate := 0.0
	if s := st.Elapsed.Seconds(); s > 0 {
		rate = float64(st.Ticks) / s
	}
	span := "no ticks"
	if rep.Ticks > 0 {
		span = time.UnixMilli(rep.First).UTC().Format(time.RFC3339) + " .. " + time.UnixMilli(rep.Last).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "backtest: %d ticks from %s (%s), %d applied, %s, %.0f ticks/s\n", rep.Ticks, rep.Source, span, rep.Applied,
		st.Elapsed.Round(time.Millisecond), rate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "strategy\tpair\tsignals\ttrades\twin rate\tpnl\trealized\tmax drawdown\texposure\tposition")
	for _, s := range rep.Strategies {
		wr := "-"
		if s.WinRate != nil {
			wr = *s.WinRate
		}
		fmt.Fprintf(tw, "%s\t%s:%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Exchange, s.Symbol, s.Signals, s.Trades, wr,
			s.PnL, s.RealizedPnL, s.MaxDrawdown, s.Exposure, s.Position)
		if s.Lost+s.Failed > 0 {
			fmt.Fprintf(tw, "  %s: %d triggers lost to the Execute timeout, %d failed: this run may not be what live decided\n", s.Name, s.Lost, s.Failed)
		}
	}
	tw.Flush()
}
