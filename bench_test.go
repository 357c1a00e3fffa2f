package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestBenchReportsEveryStage runs the load command briefly and checks that
// each stage it reports moved: a metric renamed under the bench (the
// producer's counter once was, and the producer row and every backlog
// then read 0 — "steady") fails here instead of printing a quiet lie.
func TestBenchReportsEveryStage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a pipeline")
	}
	var out bytes.Buffer
	args := []string{"-sinks", "cache,push,risk", "-rate", "2000", "-pairs", "20", "-d", "2s", "-warmup", "1s", "-raw-ticks", "2000"}
	if code := runBench(context.Background(), args, &out, os.Getenv); code != 0 {
		t.Fatalf("bench exited %d:\n%s", code, out.String())
	}
	report := out.String()
	// rows: stage → its cells (ticks/s, raw limit, ratio, ...).
	rows := map[string][]string{}
	for _, line := range strings.Split(report, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || cells[0] != "" {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[cells[1]] = cells[2:]
	}
	for _, stage := range []string{"load source → queue", "producer → broker", "cache", "push", "risk"} {
		r, ok := rows[stage]
		if !ok {
			t.Errorf("no row for %q in:\n%s", stage, report)
			continue
		}
		if r[0] == "0" {
			t.Errorf("%s: rate 0 while the source sent 2000/s:\n%s", stage, report)
		}
	}
	// The raw broker limits ran too, and measured something.
	if r := rows["producer → broker"]; len(r) < 2 || strings.HasPrefix(r[1], "0 ") {
		t.Errorf("raw kfake produce limit missing or 0:\n%s", report)
	}
	if !strings.Contains(report, "WebSocket client following every pair (frame read → client received") {
		t.Errorf("no WebSocket latency line:\n%s", report)
	}
}
