package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// BenchmarkGetTickLoad drives GET /api/v1/tick over loopback HTTP with a
// Go load generator: first at a fixed 10 000 req/s (open loop: latency is
// measured from each request's scheduled time, so a stall is not hidden by
// the generator waiting), then closed loop for the maximum rate. Each
// phase is bounded in time and in requests. One iteration is one full run:
//
//	go test -run '^$' -bench GetTickLoad -benchtime 1x ./api/
func BenchmarkGetTickLoad(b *testing.B) {
	for _, backend := range []string{"redis", "memory"} {
		b.Run(backend, func(b *testing.B) {
			cfg := cache.DefaultConfig()
			if backend == "redis" {
				cfg.Redis.Addrs = []string{testsvc.StartRedis(b, "--appendonly", "no").Addr()}
			}
			sink, err := cache.New(sinks.Env{}, *cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if err := sink.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			defer sink.Close(ctx)
			var urls []string
			var batch []tick.Tick
			for i := range 20 {
				sym := fmt.Sprintf("SYM%02dUSDT", i)
				batch = append(batch, mk("binance", sym, 1_767_000_000_000+int64(i), "50123.45"))
				urls = append(urls, "/api/v1/tick/binance/"+sym)
			}
			if err := sink.WriteBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
			srv := api.New(api.Options{Listen: "127.0.0.1:0", Components: []any{sink}})
			if err := srv.Listen(); err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for i := range urls {
				urls[i] = "http://" + srv.Addr() + urls[i]
			}
			for range b.N {
				paced := runLoad(b, urls, 10_000, 3*time.Second, 64)
				report(b, "paced10k", paced)
				closed := runLoad(b, urls, 0, 2*time.Second, 16)
				report(b, "max", closed)
			}
		})
	}
}

type loadResult struct {
	sent, failed int
	elapsed      time.Duration
	lat          []time.Duration
}

func report(b *testing.B, phase string, r loadResult) {
	slices.Sort(r.lat)
	q := func(p float64) float64 {
		if len(r.lat) == 0 {
			return 0
		}
		return float64(r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))].Microseconds())
	}
	b.ReportMetric(float64(len(r.lat))/r.elapsed.Seconds(), phase+"_req/s")
	b.ReportMetric(q(0.50), phase+"_p50_µs")
	b.ReportMetric(q(0.99), phase+"_p99_µs")
	b.ReportMetric(q(0.999), phase+"_p99.9_µs")
	if r.failed > 0 {
		b.Errorf("%s: %d of %d requests failed", phase, r.failed, r.sent)
	}
}

// runLoad sends GETs round-robin over urls with the given number of
// workers for at most d and at most rate*d requests. rate > 0 paces the
// requests (open loop): request k is due at start + k/rate and worker
// k%workers sends it. Its latency counts from when it was due, so a
// worker still busy with a slow answer records the wait too; a worker
// that overslept counts from its wake-up, which is the generator's delay,
// not the server's. rate == 0 sends as fast as the workers can.
func runLoad(b *testing.B, urls []string, rate int, d time.Duration, workers int) loadResult {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for k := w; k < maxReq; k += workers {
				from := time.Now()
				if rate > 0 {
					due := start.Add(time.Duration(float64(k) / float64(rate) * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait) // pacing, not synchronisation
						from = time.Now()
					} else {
						from = due
					}
				}
				if from.After(deadline) {
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
		}()
	}
	wg.Wait()
	return loadResult{sent: int(sent.Load()), failed: int(failed.Load()), elapsed: time.Since(start), lat: lat}
}

// BenchmarkGetTickHandler is the server's own cost per GET /api/v1/tick,
// without a network or a load generator: routing, the cache read (rueidis
// client-side cache, or process memory) and encoding.
func BenchmarkGetTickHandler(b *testing.B) {
	for _, backend := range []string{"redis", "memory"} {
		b.Run(backend, func(b *testing.B) {
			cfg := cache.DefaultConfig()
			if backend == "redis" {
				cfg.Redis.Addrs = []string{testsvc.StartRedis(b, "--appendonly", "no").Addr()}
			}
			sink, err := cache.New(sinks.Env{}, *cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := sink.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			defer sink.Close(ctx)
			if err := sink.WriteBatch(ctx, []tick.Tick{mk("binance", "BTCUSDT", 1_767_000_000_000, "50123.45")}); err != nil {
				b.Fatal(err)
			}
			h := api.New(api.Options{Components: []any{sink}}).Handler()
			req := httptest.NewRequest(http.MethodGet, "/api/v1/tick/binance/btcusdt", nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("%d %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}
