package loadgen

import (
	"math"
	"sort"
	"time"
)

// Pacer schedules sends at an exact rate: send k is due at start + k/rate.
// A generator asks how many are due, sends them in one burst and sleeps
// until the next is due, so the rate holds however often it wakes (no
// sleep per send, no drift from oversleeping). Rate 0 means flat out.
type Pacer struct {
	start time.Time
	rate  float64
	sent  int64
}

// NewPacer starts a schedule at start.
func NewPacer(rate float64, start time.Time) *Pacer { return &Pacer{start: start, rate: rate} }

// Due returns how many sends are due at now and not yet taken, at most
// limit (limit also bounds a flat-out burst), and marks them taken.
func (p *Pacer) Due(now time.Time, limit int) int {
	if p.rate <= 0 {
		p.sent += int64(limit)
		return limit
	}
	due := int64(now.Sub(p.start).Seconds()*p.rate) + 1 // send 0 is due at start
	n := min(due-p.sent, int64(limit))
	if n <= 0 {
		return 0
	}
	p.sent += n
	return int(n)
}

// Next is when the next send is due (now for a flat-out pacer).
func (p *Pacer) Next() time.Time {
	if p.rate <= 0 {
		return p.start
	}
	return p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))
}

// Sent is how many sends have been taken.
func (p *Pacer) Sent() int64 { return p.sent }

// Bucket is one cumulative histogram bucket (Prometheus style): Count
// observations were <= UpperBound.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// HistogramQuantile estimates the q-quantile from cumulative buckets,
// sorted by bound, interpolating linearly within the bucket it falls in
// (the first bucket's lower bound is 0), as Prometheus' histogram_quantile
// does. Past the last finite bound it returns that bound: the histogram
// cannot say more. NaN when there are no observations.
func HistogramQuantile(q float64, buckets []Bucket, total float64) float64 {
	if total <= 0 || len(buckets) == 0 {
		return math.NaN()
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].UpperBound < buckets[j].UpperBound })
	rank := q * total
	lo, below := 0.0, 0.0
	for _, b := range buckets {
		if b.Count >= rank && !math.IsInf(b.UpperBound, 1) {
			if b.Count == below {
				return b.UpperBound
			}
			return lo + (b.UpperBound-lo)*(rank-below)/(b.Count-below)
		}
		if math.IsInf(b.UpperBound, 1) {
			break
		}
		lo, below = b.UpperBound, b.Count
	}
	return lo
}

// Slope is the least-squares slope of ys sampled every dt: units per
// second. Zero for fewer than two samples.
func Slope(ys []float64, dt time.Duration) float64 {
	n := float64(len(ys))
	if len(ys) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i, y := range ys {
		x := float64(i) * dt.Seconds()
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

// Trend calls a lag series over the measured window "growing" when it
// rises by more than tolerance records per second (least squares over the
// second half, so a warm-up backlog draining does not count) and ends
// above tolerance records; otherwise "steady".
func Trend(lag []float64, dt time.Duration, tolerance float64) (string, float64) {
	half := lag[len(lag)/2:]
	s := Slope(half, dt)
	if s > tolerance && len(lag) > 0 && lag[len(lag)-1] > tolerance {
		return "growing", s
	}
	return "steady", s
}

// Quantile of sorted durations (0 <= q <= 1), zero when empty.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
