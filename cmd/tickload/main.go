// Command tickload measures a running tickflow's REST API from a separate
// process, so the load generator does not share the server's scheduler and
// garbage collector: GET /api/v1/tick for every known pair, paced at -rate
// requests per second, then reports throughput and latency percentiles.
//
//	go run ./cmd/tickload -api http://127.0.0.1:8080 -rate 10000 -d 5s
//
// Loopback only, bounded in time and in requests.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tickflow/tickflow/internal/loadgen"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:8080", "tickflow API base URL")
	rate := flag.Int("rate", 10000, "requests per second (0: as fast as the workers go)")
	d := flag.Duration("d", 5*time.Second, "how long to run")
	workers := flag.Int("workers", 64, "concurrent connections")
	flag.Parse()
	if err := run(*api, *rate, *d, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "tickload:", err)
		os.Exit(1)
	}
}

func run(api string, rate int, d time.Duration, workers int) error {
	if d <= 0 || d > 10*time.Minute {
		return fmt.Errorf("-d %s: want a duration in (0, 10m]", d)
	}
	resp, err := http.Get(strings.TrimRight(api, "/") + "/api/v1/symbols")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Data []struct{ Exchange, Symbol string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("/api/v1/symbols: %w", err)
	}
	if len(body.Data) == 0 {
		return fmt.Errorf("/api/v1/symbols lists no pairs yet")
	}
	var urls []string
	for _, p := range body.Data {
		urls = append(urls, fmt.Sprintf("%s/api/v1/tick/%s/%s", strings.TrimRight(api, "/"), p.Exchange, p.Symbol))
	}
	r := loadgen.Run(urls, rate, d, workers)
	fmt.Printf("pairs=%d rate=%d workers=%d sent=%d failed=%d req/s=%.0f p50=%s p99=%s p99.9=%s max=%s\n",
		len(urls), rate, workers, r.Sent, r.Failed, r.Rate(), r.Quantile(0.50), r.Quantile(0.99), r.Quantile(0.999), r.Quantile(1))
	if r.Failed > 0 {
		return fmt.Errorf("%d of %d requests failed", r.Failed, r.Sent)
	}
	return nil
}
