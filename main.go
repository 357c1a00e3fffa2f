// Command tickflow runs the whole market-data pipeline from one binary and
// one YAML file: exchange ingestors → Kafka (embedded or external) → sinks,
// each in its own consumer group, with the REST API and web page on top.
// The commands live in package cli, the wiring in package app.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tickflow/tickflow/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}
