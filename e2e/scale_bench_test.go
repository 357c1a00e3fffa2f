package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/internal/loadgen"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// BenchmarkScaleWorkers measures how the store (ClickHouse) and the cache
// (Redis Cluster) scale with the number of worker processes sharing their
// group on one broker: 1, 2 and 3 tickflow processes running one sink, fed
// a burst of ticks produced into a fresh topic once they have all joined.
// It reports ticks/s from the first produced tick until the group has
// committed the last one, and each worker's CPU (user + system, from
// /proc) over that window. Everything — broker, servers, workers — shares
// this machine's cores, so it measures contention as much as scaling.
//
//	go test -run x -bench ScaleWorkers -benchtime 1x .
//
// Until the issue-9 load command lands, this is the harness behind the
// figure in docs/PERFORMANCE.md.
func BenchmarkScaleWorkers(b *testing.B) {
	const (
		pairs      = 24
		partitions = 12
	)
	// Enough ticks for a window of several seconds at each sink's rate:
	// the window's ends are commits, 500 ms apart per worker.
	ticks := map[string]int{"store": 1_000_000, "cache": 3_000_000}
	if v, err := strconv.Atoi(os.Getenv("TICKFLOW_SCALE_TICKS")); err == nil && v > 0 {
		ticks = map[string]int{"store": v, "cache": v}
	}
	cluster := testsvc.StartRedisCluster(b, 3)
	ch := testsvc.StartClickHouse(b)
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer emb.Close()
	broker := emb.Addrs()[0]
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	adm := admin(b, broker)
	redisAddrs := strings.Join(quoteAll(cluster.Addrs()), ", ")

	for _, sink := range []string{"store", "cache"} {
		for workers := 1; workers <= 3; workers++ {
			b.Run(fmt.Sprintf("%s/workers=%d", sink, workers), func(b *testing.B) {
				n := ticks[sink]
				for range b.N {
					topic := fmt.Sprintf("bench_%s_%d_%d", sink, workers, time.Now().UnixNano())
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer cancel()
					if err := bus.EnsureTopic(ctx, cc, topic, partitions, -1); err != nil {
						b.Fatal(err)
					}
					var section string
					switch sink {
					case "store":
						section = fmt.Sprintf("  store: {enabled: true, batch: {size: 5000, max_wait: 200ms}, clickhouse: {url: %q, database: %s}}\n", ch.HTTPURL(), topic)
					case "cache":
						section = fmt.Sprintf("  cache: {enabled: true, redis: {addrs: [%s]}}\n", redisAddrs)
					}
					// The backlog is in Kafka before any worker starts, so
					// the producer does not bound the figure.
					produceBurst(b, cc, topic, pairs, n)
					if workers == 1 {
						b.Logf("ticks per partition: %s", perPartition(b, adm, topic))
					}
					var procs []*proc
					for w := range workers {
						id := fmt.Sprintf("w%d", w+1)
						dir := filepath.Join(b.TempDir(), id)
						if err := os.MkdirAll(dir, 0o755); err != nil {
							b.Fatal(err)
						}
						procs = append(procs, startTickflow(b, dir, fmt.Sprintf(`ingest: {binance: {enabled: false}}
bus: {brokers: [%q], topic: %s, partitions: %d, instance_id: %s, client_id: %s, session_timeout: 6s}
sinks:
%sapi: {listen: "127.0.0.1:%d"}
log: {format: json, level: warn}
`, broker, topic, partitions, id, id, section, testsvc.FreePort(b))))
					}
					group := "tickflow." + sink
					waitAssigned(b, adm, group, fmt.Sprintf("%d workers sharing %s", workers, group), func(m map[string]int) bool {
						total := 0
						for _, c := range m {
							total += c
						}
						return len(m) == workers && total == partitions
					})

					// The window: from the first commit after the group is
					// stable to the first commit past 80 % of the backlog.
					// Both ends are commits (every 500 ms per worker), so the
					// rate is what the workers wrote and committed between.
					c0 := committedOn(adm, group, topic)
					var c1 int64
					testkit.Eventually(b, time.Minute, group+" committing", func() bool {
						c1 = committedOn(adm, group, topic)
						return c1 > c0
					})
					t1, cpu1, sys1 := time.Now(), workerCPU(b, procs), machineBusy(b)
					target := c1 + (int64(n)-c1)*8/10
					if int64(n)-c1 < int64(n)/3 {
						b.Fatalf("%s had committed %d of %d ticks before the window opened; raise TICKFLOW_SCALE_TICKS", group, c1, n)
					}
					var c2 int64
					testkit.Eventually(b, 5*time.Minute, group+" committing 80% of the backlog", func() bool {
						c2 = committedOn(adm, group, topic)
						return c2 >= target
					})
					elapsed := time.Since(t1)
					cpu2, sys2 := workerCPU(b, procs), machineBusy(b)
					var cpus []string
					var cpuTotal float64
					for i := range procs {
						c := cpu2[i] - cpu1[i]
						cpuTotal += c
						cpus = append(cpus, fmt.Sprintf("%.2f", c/elapsed.Seconds()))
					}
					rate := float64(c2-c1) / elapsed.Seconds()
					busy := (sys2 - sys1) / elapsed.Seconds()
					b.ReportMetric(rate, "ticks/s")
					b.ReportMetric(cpuTotal/elapsed.Seconds(), "worker-cores")
					b.ReportMetric(busy, "machine-cores")
					b.ReportMetric(float64(c2-c1)/cpuTotal, "ticks/worker-cpu-s")
					b.Logf("%s, %d workers: %d ticks in %.2fs = %.0f ticks/s; CPU per worker (cores) %s; machine busy %.2f of 2 cores; %.0f ticks per worker CPU-second",
						sink, workers, c2-c1, elapsed.Seconds(), rate, strings.Join(cpus, " "), busy, float64(c2-c1)/cpuTotal)
					testkit.Eventually(b, 5*time.Minute, group+" committing every tick", func() bool {
						return committedOn(adm, group, topic) == int64(n)
					})
					for _, p := range procs {
						if err := p.stop(b); err != nil {
							b.Errorf("worker exit: %v", err)
						}
					}
				}
			})
		}
	}
}

// produceBurst sends n ticks over pairs pairs into topic as fast as the
// broker acknowledges.
func produceBurst(b *testing.B, cc bus.ClientConfig, topic string, pairs, n int) {
	b.Helper()
	p, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := time.Now().UnixMilli()
	for i := range n {
		tk := tick.Tick{
			Exchange: "bench", Symbol: fmt.Sprintf("P%02dUSDT", i%pairs), Timestamp: base + int64(i/pairs),
			Price: tick.MustDecimal(fmt.Sprintf("%d.%02d", 100+i%50, i%100)), Volume: tick.MustDecimal("1.5"),
			Bid: tick.MustDecimal("99.99"), Ask: tick.MustDecimal("100.01"), ReceivedAt: time.Now().UnixMicro(),
		}
		if err := p.Produce(ctx, &tk); err != nil {
			b.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// committedOn is group's commit on topic, summed over partitions.
func committedOn(adm *kadm.Client, group, topic string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			sum += o.At
		}
	})
	return sum
}

// perPartition lists topic's end offsets by partition: the pairs hash
// unevenly, so the partitions, and the workers owning them, carry unequal
// shares.
func perPartition(b *testing.B, adm *kadm.Client, topic string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]string, len(ends[topic]))
	ends.Each(func(o kadm.ListedOffset) {
		if int(o.Partition) < len(out) {
			out[o.Partition] = strconv.FormatInt(o.Offset, 10)
		}
	})
	return strings.Join(out, " ")
}

func workerCPU(b *testing.B, procs []*proc) []float64 {
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = cpuSeconds(b, p.cmd.Process.Pid)
	}
	return out
}

// machineBusy is the CPU time, in seconds, every core of the machine has
// spent not idle (/proc/stat).
func machineBusy(b *testing.B) float64 {
	b.Helper()
	busy, _, err := loadgen.MachineCPU()
	if err != nil {
		b.Fatal(err)
	}
	return busy
}

// cpuSeconds is the user + system CPU time pid has used, from /proc.
func cpuSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	v, err := loadgen.ProcessCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
