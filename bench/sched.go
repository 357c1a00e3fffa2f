package bench

import (
	rtmetrics "runtime/metrics"

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
