package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/tickflow/tickflow/app"
	"github.com/tickflow/tickflow/config"
)

const runUsage = `usage: tickflow [run] [-config FILE]

Runs every component config.yaml enables until SIGINT or SIGTERM: the
sources, the bus (an embedded broker unless bus.brokers is set), the sinks
and the API. A broken config stops it before anything starts (exit 2).

`

// runPipeline is "tickflow run".
func runPipeline(ctx context.Context, args []string, io IO) int {
	fs := flag.NewFlagSet("tickflow run", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.Usage = func() { fmt.Fprint(io.Stderr, runUsage); fs.PrintDefaults() }
	path := fs.String("config", "config.yaml", "path to the YAML config file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Stderr, "tickflow run: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := config.Load(*path, io.Getenv)
	if err != nil {
		fmt.Fprintf(io.Stderr, "tickflow: %v\n", err)
		return 2
	}
	log := app.NewLogger(cfg.Log, io.Stderr)
	if err := app.Run(ctx, cfg, app.Options{Logger: log}); err != nil {
		log.Error("tickflow stopped with an error", "err", err)
		return 1
	}
	log.Info("tickflow stopped cleanly")
	return 0
}
