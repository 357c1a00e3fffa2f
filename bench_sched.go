package main

import (
	"fmt"
	"os"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"

	"github.com/tickflow/tickflow/internal/loadgen"
)

// schedMetrics are the Go runtime's own histograms that say whether a
// latency tail is tickflow's code or the machine: how long runnable
// goroutines waited for a CPU, and how long the world stopped for GC.
var schedMetrics = []string{"/sched/latencies:seconds", "/sched/pauses/total/gc:seconds"}

// readSched samples schedMetrics.
func readSched() []rtmetrics.Sample {
	s := make([]rtmetrics.Sample, len(schedMetrics))
	for i, n := range schedMetrics {
		s[i].Name = n
	}
	rtmetrics.Read(s)
	return s
}

// schedHist is end minus base of sample i as cumulative buckets, so the
// bench's quantile reads it like its Prometheus histograms.
func schedHist(base, end []rtmetrics.Sample, i int) hist {
	if end[i].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return hist{}
	}
	e, b := end[i].Value.Float64Histogram(), base[i].Value.Float64Histogram()
	var h hist
	var cum float64
	for k, c := range e.Counts {
		if k < len(b.Counts) {
			c -= b.Counts[k]
		}
		cum += float64(c)
		h.buckets = append(h.buckets, loadgen.Bucket{UpperBound: e.Buckets[k+1], Count: cum})
	}
	h.count = cum
	return h
}

// procStatCPU reads /proc/stat's total over every core, in seconds
// (USER_HZ is 100): CPU time not idle, and all of it, so the bench can say
// how busy the whole box was (tickflow, Redis, ClickHouse and anything
// else on it).
func procStatCPU() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range f[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy / 100, total / 100, nil
}
