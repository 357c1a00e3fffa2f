// Package cli is tickflow's command line: a table of commands (run, the
// default; replay; backtest; bench; version; help), each with its own flags
// and usage. main hands it the arguments and exits with the code it
// returns: 0 done, 1 failed, 2 bad usage or a broken config.
package cli

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/tickflow/tickflow/bench"
)

// IO is what a command reads and writes besides its arguments.
type IO struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string // one line, for the command list
	Run     func(ctx context.Context, args []string, io IO) int
}

// Commands is the command table, in the order help lists it.
func Commands() []Command {
	return []Command{
		{"run", "run the pipeline the config describes (the default command)", runPipeline},
		{"replay", "republish stored ticks into a topic, paced by event time", runReplay},
		{"backtest", "run the configured strategies over stored ticks and report", runBacktest},
		{"bench", "measure the whole pipeline under load against the raw limits", func(ctx context.Context, args []string, io IO) int {
			return bench.Main(ctx, args, io.Stderr, io.Getenv)
		}},
		{"version", "print the version and build of this binary", runVersion},
		{"help", "show this list, or a command's flags (help <command>)", nil}, // answered by Main
	}
}

// Main runs the command args name and returns the process exit code. With
// no command word (no arguments, or a flag first) it runs the pipeline, so
// `tickflow -config x.yaml` keeps working; an unknown word is an error, not
// a live pipeline.
func Main(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelpFlag(args[0]) {
			usage(io.Stdout)
			return 0
		}
		return runPipeline(ctx, args, io)
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		return help(ctx, rest, io)
	}
	for _, c := range Commands() {
		if c.Name == name && c.Run != nil {
			return c.Run(ctx, rest, io)
		}
	}
	fmt.Fprintf(io.Stderr, "tickflow: unknown command %q\n\n", name)
	usage(io.Stderr)
	return 2
}

// help lists the commands, or shows one command's flags.
func help(ctx context.Context, args []string, io IO) int {
	if len(args) == 0 {
		usage(io.Stdout)
		return 0
	}
	for _, c := range Commands() {
		if c.Name == args[0] && c.Run != nil {
			// Every command prints its usage and flags for -h, and
			// returns 0 for it (flag.ErrHelp).
			return c.Run(ctx, []string{"-h"}, IO{Stdout: io.Stdout, Stderr: io.Stdout, Getenv: io.Getenv})
		}
	}
	fmt.Fprintf(io.Stderr, "tickflow help: unknown command %q\n\n", args[0])
	usage(io.Stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: tickflow [command] [flags]\n\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range Commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nWith no command, tickflow runs the pipeline: tickflow -config config.yaml\n"+
		"tickflow help <command> shows a command's flags.\n")
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

// runVersion prints the module version and VCS revision the binary was
// built from, and the Go version.
func runVersion(_ context.Context, args []string, io IO) int {
	if len(args) > 0 {
		if isHelpFlag(args[0]) {
			fmt.Fprintln(io.Stdout, "usage: tickflow version\n\nPrints the version, revision and Go version of this binary.")
			return 0
		}
		fmt.Fprintf(io.Stderr, "tickflow version: unexpected argument %q\n", args[0])
		return 2
	}
	b := Build()
	fmt.Fprintf(io.Stdout, "tickflow %s (revision %s, %s)\n", b.Version, b.Revision, b.Go)
	return 0
}

// BuildInfo says which build this binary is.
type BuildInfo struct {
	Version, Revision, Go string
}

// Build reads the version stamped into the binary by the Go toolchain:
// the module version for `go install`, "(devel)" for a checkout build,
// whose VCS revision (with "-dirty" for uncommitted changes) says more.
func Build() BuildInfo {
	b := BuildInfo{Version: "unknown", Revision: "unknown", Go: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Go = bi.GoVersion
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "-dirty"
	}
	return b
}
