package bench

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/app"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/testkit"
)

// TestBenchReadsEveryStage runs the load command's pipeline and checks that
// the snapshot the report is made from sees every stage move: a metric
// renamed under the bench (the producer's counter once was, and the
// producer row and every backlog then read 0 — "steady") fails here
// instead of printing a quiet lie. No time window is judged: it waits
// until each counter has moved.
func TestBenchReadsEveryStage(t *testing.T) {
	o := benchOpts{sinks: "cache,push,risk", rate: 2000, pairs: 20, partitions: 4, logLevel: "warn"}
	on := map[string]bool{"cache": true, "push": true, "risk": true}
	cfg, _, err := benchConfig(t.TempDir(), o, on)
	if err != nil {
		t.Fatal(err)
	}
	gen := &genFeed{rate: o.rate, pairs: []string{"P0000USDT", "P0001USDT"}}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{Logger: app.NewLogger(config.Log{Level: "warn", Format: "text"}, &logs), Registry: reg,
			Feeds: []func(ingest.Enqueuer) ingest.Feed{func(q ingest.Enqueuer) ingest.Feed { gen.q = q; return gen }}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pipeline: %v", err)
		}
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("pipeline logged errors:\n%s", logs.String())
		}
	}()
	testkit.Eventually(t, 60*time.Second, "every stage counted in the bench's snapshot", func() bool {
		s := gatherSnap(reg)
		if s.produced == 0 || s.batches["cache"] == 0 {
			return false
		}
		for n := range on {
			if s.sink[n] == 0 || s.hist[n].count == 0 {
				return false
			}
		}
		return true
	})
}

// TestBenchReport runs the command itself, briefly, and checks the report
// has its rows and a WebSocket line: the shape, not the rates (a loaded
// machine may pass a short window without a tick).
func TestBenchReport(t *testing.T) {
	var out bytes.Buffer
	args := []string{"-sinks", "cache,push,risk", "-rate", "2000", "-pairs", "20", "-d", "1s", "-warmup", "1s", "-raw-ticks", "2000"}
	if code := Main(context.Background(), args, &out, os.Getenv); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, out.String())
	}
	report := out.String()
	for _, row := range []string{"| load source → queue |", "| producer → broker (→ acked) |", "| cache |", "Go runtime: runnable goroutine waited", "whole machine", "| push |", "| risk |", "WebSocket client following every pair", "raw limits: kfake produce"} {
		if !strings.Contains(report, row) {
			t.Errorf("no %q in:\n%s", row, report)
		}
	}
	if strings.Contains(report, "symbol has no normalized instrument") {
		t.Errorf("the load source's ticks have no instrument:\n%s", report)
	}
}
