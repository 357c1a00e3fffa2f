package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tickflow/tickflow/api"
	"github.com/tickflow/tickflow/internal/loadgen"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
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
			srv := api.New(api.Options{Listen: "127.0.0.1:0", Cache: sink})
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
				paced := loadgen.Run(urls, 10_000, 3*time.Second, 64)
				report(b, "paced10k", paced)
				closed := loadgen.Run(urls, 0, 2*time.Second, 16)
				report(b, "max", closed)
			}
		})
	}
}

func report(b *testing.B, phase string, r loadgen.Result) {
	us := func(q float64) float64 { return float64(r.Quantile(q).Microseconds()) }
	b.ReportMetric(r.Rate(), phase+"_req/s")
	b.ReportMetric(us(0.50), phase+"_p50_µs")
	b.ReportMetric(us(0.99), phase+"_p99_µs")
	b.ReportMetric(us(0.999), phase+"_p99.9_µs")
	if r.Failed > 0 {
		b.Errorf("%s: %d of %d requests failed", phase, r.Failed, r.Sent)
	}
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
			h := api.New(api.Options{Cache: sink}).Handler()
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
