// Package loadgen drives HTTP GETs at a fixed rate (open loop) or as fast
// as a number of workers can, and reports latency percentiles. It backs
// the API benchmarks and the tickload command, so the numbers in
// docs/PERFORMANCE.md come from one implementation.
package loadgen

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one run's outcome.
type Result struct {
	Sent, Failed int
	Elapsed      time.Duration
	// Latencies of the successful requests, sorted.
	Latencies []time.Duration
}

// Rate is successful requests per second.
func (r Result) Rate() float64 { return float64(len(r.Latencies)) / r.Elapsed.Seconds() }

// Quantile returns the q-quantile latency (0 <= q <= 1).
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	return r.Latencies[min(len(r.Latencies)-1, int(q*float64(len(r.Latencies))))]
}

// Run sends GETs round-robin over urls with the given number of workers for
// at most d and at most rate*d requests. rate > 0 paces the requests (open
// loop): request k is due at start + k/rate and worker k%workers sends it;
// its latency counts from when it was due, so a worker still busy with a
// slow answer records the wait too, while a worker that overslept counts
// from its wake-up (the generator's delay, not the server's). rate == 0
// sends as fast as the workers can.
func Run(urls []string, rate int, d time.Duration, workers int) Result {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	maxReq := 1 << 30
	if rate > 0 {
		maxReq = int(float64(rate) * d.Seconds())
	}
	var (
		mu     sync.Mutex
		lat    = make([]time.Duration, 0, min(maxReq, 1<<20))
		failed atomic.Int64
		sent   atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for k := w; k < maxReq; k += workers {
				from := time.Now()
				if rate > 0 {
					// Paced: the schedule, not when this worker woke,
					// decides which requests belong to the run, so a
					// late wake-up on a loaded machine does not drop the
					// last ones.
					due := start.Add(time.Duration(float64(k) / float64(rate) * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait) // pacing, not synchronisation
						from = time.Now()
					} else {
						from = due
					}
					if due.After(deadline) {
						break
					}
				} else if from.After(deadline) {
					break
				}
				sent.Add(1)
				resp, err := client.Get(urls[k%len(urls)])
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				local = append(local, time.Since(from))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return Result{Sent: int(sent.Load()), Failed: int(failed.Load()), Elapsed: time.Since(start), Latencies: lat}
}
