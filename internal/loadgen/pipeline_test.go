package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestPacerSendsExactlyTheScheduleHoweverItWakes(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	p := NewPacer(250_000, start)
	total := 0
	// Wake at uneven times over one second: 0, 0.3 ms, 1.7 ms, ... 1 s.
	for _, us := range []int{0, 300, 1700, 1701, 50_000, 333_333, 999_999} {
		total += p.Due(start.Add(time.Duration(us)*time.Microsecond), 1<<30)
	}
	// Sends 0..249 999 are due by 999 999 µs (send k at k×4 µs).
	if total != 250_000 {
		t.Fatalf("sent %d in the first second, want 250000", total)
	}
	if got := p.Next(); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("next due %v, want start+1s", got.Sub(start))
	}
	// A burst limit defers the rest, it does not drop them.
	if n := p.Due(start.Add(2*time.Second), 1000); n != 1000 {
		t.Fatalf("limited burst %d", n)
	}
	if n := p.Due(start.Add(2*time.Second), 1<<30); n != 250_001-1000 {
		t.Fatalf("rest of the second second: %d", n)
	}
	flat := NewPacer(0, start)
	if flat.Due(start, 512) != 512 || flat.Sent() != 512 {
		t.Fatal("flat out sends the whole burst")
	}
}

func TestHistogramQuantileInterpolatesWithinBuckets(t *testing.T) {
	// 100 observations: 50 in (0, 1ms], 40 in (1, 2ms], 10 in (2, 5ms].
	b := []Bucket{{0.001, 50}, {0.002, 90}, {0.005, 100}, {math.Inf(1), 100}}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 0.0005}, {0.5, 0.001}, {0.7, 0.0015}, {0.95, 0.0035}, {1, 0.005},
	} {
		if got := HistogramQuantile(tc.q, b, 100); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("q%.2f = %v, want %v", tc.q, got, tc.want)
		}
	}
	// Beyond the last finite bound the answer is that bound.
	over := []Bucket{{0.001, 10}, {math.Inf(1), 100}}
	if got := HistogramQuantile(0.99, over, 100); got != 0.001 {
		t.Errorf("overflow: %v", got)
	}
	if !math.IsNaN(HistogramQuantile(0.5, nil, 0)) {
		t.Error("empty histogram must be NaN")
	}
}

func TestTrendTellsGrowingFromSteadyAndDraining(t *testing.T) {
	sec := time.Second
	steady := []float64{900, 1100, 1000, 950, 1050, 1000, 980, 1020}
	growing := []float64{0, 10e3, 20e3, 30e3, 40e3, 50e3, 60e3, 70e3}
	draining := []float64{70e3, 60e3, 50e3, 40e3, 30e3, 20e3, 10e3, 0}
	if tr, _ := Trend(steady, sec, 1000); tr != "steady" {
		t.Errorf("steady lag: %s", tr)
	}
	if tr, s := Trend(growing, sec, 1000); tr != "growing" || math.Abs(s-10e3) > 1e-6 {
		t.Errorf("growing lag: %s at %v/s", tr, s)
	}
	if tr, _ := Trend(draining, sec, 1000); tr != "steady" {
		t.Errorf("draining lag: %s", tr)
	}
	if Slope([]float64{5}, sec) != 0 {
		t.Error("one sample has no slope")
	}
}

func TestQuantileOfSorted(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if Quantile(d, 0.5) != 6 || Quantile(d, 0.99) != 10 || Quantile(d, 0) != 1 || Quantile(nil, 0.5) != 0 {
		t.Fatal("quantiles")
	}
}
