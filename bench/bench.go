// Package bench is the load command, `tickflow bench`: it runs the real
// pipeline (app.Run, the same wiring as a normal run) from a paced load
// source and reports what each stage sustains next to the raw limits of the
// same building blocks, measured in the same invocation. It is a command of
// the tickflow binary rather than a binary of its own because it must run
// the pipeline itself: a second copy of the wiring would measure something
// else.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/app"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/loadgen"
	"github.com/tickflow/tickflow/internal/spawn"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/tick"
)

type benchOpts struct {
	rate, pairs     int
	d, warmup       time.Duration
	sinks           string
	redis, chURL    string
	services, raw   bool
	linger          string
	busYAML         string
	partitions      int
	progress        io.Writer
	stderr          io.Writer
	getenv          func(string) string
	rawTicks        int
	logLevel        string
	wsClient        bool
	extraSinkConfig string
	cpuProfile      string
	memProfile      string
	wsPairs         int
}

// Main is "tickflow bench": it returns the exit code (2 for bad flags, 1
// when the run failed).
func Main(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("tickflow bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := benchOpts{stderr: stderr, progress: stderr, getenv: getenv}
	fs.IntVar(&o.rate, "rate", 100_000, "ticks per second the load source sends (0: flat out)")
	fs.IntVar(&o.pairs, "pairs", 1000, "pairs the load source cycles through")
	fs.DurationVar(&o.d, "d", 60*time.Second, "measured duration (after the warm-up)")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "warm-up before measuring")
	fs.StringVar(&o.sinks, "sinks", "cache,store,push,strategy,risk", "sinks to enable")
	fs.StringVar(&o.redis, "redis", "", "Redis address for the cache (empty: in process, or started with -services)")
	fs.StringVar(&o.chURL, "clickhouse", "", "ClickHouse URL for the store, e.g. http://127.0.0.1:8123 (empty: started with -services, else the store is off)")
	fs.BoolVar(&o.services, "services", false, "start redis-server and clickhouse-server in a temp dir for addresses not given")
	fs.BoolVar(&o.raw, "raw", true, "measure the raw limits after the run")
	fs.IntVar(&o.rawTicks, "raw-ticks", 500_000, "ticks per raw-limit measurement")
	fs.StringVar(&o.linger, "linger", "", "bus.linger (empty: the configured default)")
	fs.StringVar(&o.busYAML, "bus-yaml", "", "extra keys under bus:, ';'-separated, e.g. 'compression: lz4'")
	fs.IntVar(&o.partitions, "partitions", 12, "bus.partitions")
	fs.BoolVar(&o.wsClient, "ws", true, "connect a WebSocket client to the push feed and measure frame→client latency")
	fs.StringVar(&o.logLevel, "log", "warn", "log level of the pipeline")
	fs.StringVar(&o.extraSinkConfig, "sink-yaml", "", "extra YAML per sink, ';'-separated, e.g. 'push: {batch: {size: 1}}; risk: {batch: {size: 500}}' (merged under sinks:)")
	fs.IntVar(&o.wsPairs, "ws-pairs", 0, "pairs the WebSocket client follows (0: every pair); a browser follows a few, and one following 100 k ticks/s costs the box as much as a sink")
	fs.StringVar(&o.memProfile, "memprofile", "", "write an allocation profile (since start) to this file when the measured window ends")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured window to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(stderr, "tickflow bench:", err)
		return 1
	}
	return 0
}

// genFeed is the load source: ticks for pairs round robin, paced by a
// loadgen.Pacer (scheduled send times, one sleep per burst, never per
// tick), each stamped with ReceivedAt when handed to the queue, as a
// source stamps it when it reads the frame.
type genFeed struct {
	q     ingest.Enqueuer
	rate  int
	pairs []string
	sent  atomic.Int64
}

func (g *genFeed) Run(ctx context.Context) error {
	p := loadgen.NewPacer(float64(g.rate), time.Now())
	price := make([]int64, len(g.pairs))
	for i := range price {
		price[i] = 5_000_000 + int64(i)*100 // cents
	}
	var k int
	lastTs := int64(0)
	for ctx.Err() == nil {
		n := p.Due(time.Now(), 4096)
		if n == 0 {
			time.Sleep(time.Until(p.Next())) // pacing, not synchronisation
			continue
		}
		for range n {
			i := k % len(g.pairs)
			k++
			price[i] += int64(k%7) - 3
			now := time.Now()
			ts := max(now.UnixMilli(), lastTs)
			lastTs = ts
			// "bench" has no symbol form to resolve, so the source names
			// the instrument itself, as an exchange decoder may.
			t := tick.Tick{Exchange: "bench", Symbol: g.pairs[i], Base: g.pairs[i][:len(g.pairs[i])-4], Quote: "USDT", Timestamp: ts, ReceivedAt: now.UnixMicro()}
			t.Price.SetFinite(price[i], -2)
			t.Bid.SetFinite(price[i]-1, -2)
			t.Ask.SetFinite(price[i]+1, -2)
			t.Volume.SetFinite(int64(1_000_000+k%1000), -4)
			t.Open24h.SetFinite(price[i]-500, -2)
			if err := g.q.Enqueue(ctx, &t); err != nil {
				if ctx.Err() != nil || errors.Is(err, ingest.ErrClosed) {
					return nil
				}
				return err
			}
		}
		g.sent.Add(int64(n))
	}
	return nil
}

func bench(ctx context.Context, o benchOpts) error {
	dir, err := os.MkdirTemp("", "tickflow-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	on := map[string]bool{}
	for _, s := range strings.Split(o.sinks, ",") {
		if s = strings.TrimSpace(s); s != "" {
			on[s] = true
		}
	}
	if o.services && on["cache"] && o.redis == "" {
		rd := filepath.Join(dir, "redis")
		if err := os.Mkdir(rd, 0o755); err != nil {
			return err
		}
		r, err := spawn.StartRedis(rd, "--appendonly", "no")
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		defer r.Stop()
		o.redis = r.Addr()
	}
	if o.services && on["store"] && o.chURL == "" {
		ch, err := spawn.LaunchClickHouse(filepath.Join(dir, "clickhouse"))
		if err != nil {
			return fmt.Errorf("clickhouse: %w", err)
		}
		defer ch.Kill()
		o.chURL = ch.HTTPURL()
	}
	if on["store"] && o.chURL == "" {
		fmt.Fprintln(o.stderr, "bench: no -clickhouse and no -services: the store is off")
		delete(on, "store")
	}
	cfg, pushAddr, err := benchConfig(dir, o, on)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stderr, "bench: rate=%d pairs=%d d=%s warmup=%s sinks=%s redis=%q clickhouse=%q linger=%s load=%s\n",
		o.rate, o.pairs, o.d, o.warmup, strings.Join(sortedKeys(on), ","), o.redis, o.chURL, cfg.Bus.Linger, loadAvg())

	pairs := make([]string, o.pairs)
	for i := range pairs {
		pairs[i] = fmt.Sprintf("P%04dUSDT", i)
	}
	gen := &genFeed{rate: o.rate, pairs: pairs}
	reg := prometheus.NewRegistry()
	log := app.NewLogger(config.Log{Level: o.logLevel, Format: "text"}, o.stderr)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- app.Run(pctx, cfg, app.Options{Logger: log, Registry: reg,
			Feeds: []func(ingest.Enqueuer) ingest.Feed{func(q ingest.Enqueuer) ingest.Feed { gen.q = q; return gen }}})
	}()

	followed := pairs // by the WebSocket client
	if o.wsPairs > 0 && o.wsPairs < len(pairs) {
		followed = pairs[:o.wsPairs]
	}
	var ws *wsProbe
	if on["push"] && o.wsClient {
		ws = &wsProbe{}
		sub := `{"type":"subscribe","channels":["tick"]}`
		if len(followed) < len(pairs) {
			js, _ := json.Marshal(followed)
			sub = `{"type":"subscribe","channels":["tick"],"symbols":` + string(js) + `}`
		}
		go ws.run(pctx, "ws://"+pushAddr+"/ws", sub)
	}

	sinkNames := sortedKeys(on)
	runStart := time.Now()
	var (
		base      snapshot
		baseRU    syscall.Rusage
		baseSched []rtmetrics.Sample
		// baseBusy, baseTotal: /proc/stat at the window's start
		baseBusy, baseTotal float64
		lags                = map[string][]float64{}
		prev                = gatherSnap(reg)
		prevSent            int64
		measured            bool
		// stopProfile ends the CPU profile, if -cpuprofile started one.
		stopProfile = func() {}
	)
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for loop := true; loop; {
		select {
		case <-ctx.Done():
			loop = false
			continue
		case err := <-done:
			return fmt.Errorf("pipeline stopped: %v", err)
		case <-tk.C:
		}
		el := time.Since(runStart)
		s := gatherSnap(reg)
		sent := gen.sent.Load()
		line := fmt.Sprintf("t=%3.0fs sent=%s/s produced=%s/s", el.Seconds(), si(float64(sent-prevSent)), si(s.produced-prev.produced))
		for _, n := range sinkNames {
			line += fmt.Sprintf(" %s=%s/s(backlog %s, lag gauge %s)", n, si(s.sink[n]-prev.sink[n]), si(max(0, s.produced-s.sink[n])), si(s.lag[n]))
		}
		if ws != nil {
			line += fmt.Sprintf(" ws=%s", si(float64(ws.frames.Load())))
		}
		fmt.Fprintln(o.progress, line)
		prev, prevSent = s, sent
		if !measured && el >= o.warmup {
			measured = true
			base = s
			base.sent = float64(sent)
			base.at = time.Now()
			syscall.Getrusage(syscall.RUSAGE_SELF, &baseRU)
			baseSched = readSched()
			baseBusy, baseTotal, _ = loadgen.MachineCPU()
			if ws != nil {
				ws.measure.Store(true)
			}
			if o.cpuProfile != "" {
				if stopProfile, err = startCPUProfile(o.cpuProfile); err != nil {
					return err
				}
				defer stopProfile() // on an early return; idempotent
			}
		}
		if measured {
			// Backlog as produced minus written: the gauge only moves
			// when the sink polls, which a sink stuck writing does not.
			for _, n := range sinkNames {
				lags[n] = append(lags[n], max(0, s.produced-s.sink[n]))
			}
		}
		if el >= o.warmup+o.d {
			break
		}
	}
	end := gatherSnap(reg)
	end.sent = float64(gen.sent.Load())
	end.at = time.Now()
	var endRU syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &endRU)
	endSched := readSched()
	endBusy, endTotal, statErr := loadgen.MachineCPU()
	stopProfile() // the measured window only
	if o.memProfile != "" {
		if err := writeAllocProfile(o.memProfile); err != nil {
			return err
		}
	}
	loadEnd := loadAvg()
	if ws != nil {
		ws.measure.Store(false)
	}
	stop()
	if err := <-done; err != nil {
		fmt.Fprintln(o.stderr, "bench: pipeline shutdown:", err)
	}
	if !measured {
		return errors.New("stopped before the warm-up ended")
	}
	win := end.at.Sub(base.at).Seconds()
	cpu := (tv(endRU.Utime) + tv(endRU.Stime) - tv(baseRU.Utime) - tv(baseRU.Stime)) / win

	// Raw limits, after the pipeline stopped, in this same process.
	var raw rawLimits
	if o.raw {
		raw = measureRaw(ctx, o, pairs, on, dir)
	}

	out := o.stderr
	fmt.Fprintf(out, "\n## tickflow bench: rate=%d pairs=%d window=%.0fs sinks=%s linger=%s compression=%s\n", o.rate, o.pairs, win, strings.Join(sinkNames, ","), cfg.Bus.Linger, cfg.Bus.Compression)
	machine := "machine CPU unknown"
	if statErr == nil && endTotal > baseTotal {
		machine = fmt.Sprintf("whole machine %.2f of %d cores busy", (endBusy-baseBusy)/(endTotal-baseTotal)*float64(runtime.NumCPU()), runtime.NumCPU())
	}
	fmt.Fprintf(out, "load average at end: %s; tickflow CPU %.2f cores; %s; peak RSS %d MiB\n\n", loadEnd, cpu, machine, endRU.Maxrss/1024)
	fmt.Fprintln(out, "| stage | ticks/s | raw limit ticks/s | ratio | backlog trend (slope/s, end) | mean batch | p50 | p99 | p99.9 (ReceivedAt→written) |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	rate := func(a, b float64) float64 { return (b - a) / win }
	fmt.Fprintf(out, "| load source → queue | %s | | | | | | | |\n", si(rate(base.sent, end.sent)))
	ack := end.hist[ackHist].minus(base.hist[ackHist])
	fmt.Fprintf(out, "| producer → broker (→ acked) | %s | %s (kfake produce) | %s | | | %s | %s | %s |\n", si(rate(base.produced, end.produced)), si(raw.produce), ratio(rate(base.produced, end.produced), raw.produce),
		ms(ack.q(0.5)), ms(ack.q(0.99)), ms(ack.q(0.999)))
	for _, n := range sinkNames {
		r := rate(base.sink[n], end.sink[n])
		lim, limName := raw.consume, "kfake consume"
		switch n {
		case "cache":
			if o.redis != "" {
				lim, limName = raw.redis, "Redis SET+ZADD pipelined"
			}
		case "store":
			lim, limName = raw.clickhouse, "ClickHouse raw insert"
		}
		trend, slope := loadgen.Trend(lags[n], time.Second, max(1000, float64(o.rate)/100))
		h := end.hist[n].minus(base.hist[n])
		mean := 0.0
		if nb := end.batches[n] - base.batches[n]; nb > 0 {
			mean = (end.sink[n] - base.sink[n]) / nb
		}
		fmt.Fprintf(out, "| %s | %s | %s (%s) | %s | %s (%+.0f/s, %s) | %.0f | %s | %s | %s |\n", n, si(r), si(lim), limName, ratio(r, lim),
			trend, slope, si(lags[n][len(lags[n])-1]), mean, ms(h.q(0.5)), ms(h.q(0.99)), ms(h.q(0.999)))
	}
	if ws != nil {
		l := ws.sorted()
		follows := "every pair"
		if len(followed) < len(pairs) {
			follows = fmt.Sprintf("%d of %d pairs", len(followed), len(pairs))
		}
		fmt.Fprintf(out, "\nWebSocket client following %s (frame read → client received, %d ticks, %d conflation notices): p50 %s, p99 %s, p99.9 %s, max %s\n",
			follows, len(l), ws.conflated.Load(), ms(loadgen.Quantile(l, 0.5).Seconds()), ms(loadgen.Quantile(l, 0.99).Seconds()),
			ms(loadgen.Quantile(l, 0.999).Seconds()), ms(loadgen.Quantile(l, 1).Seconds()))
	}
	sched, gc := schedHist(baseSched, endSched, 0), schedHist(baseSched, endSched, 1)
	fmt.Fprintf(out, "Go runtime: runnable goroutine waited for a CPU p50 %s, p99 %s, p99.9 %s; GC stopped the world %.0f times, p99 %s, max %s\n",
		ms(sched.q(0.5)), ms(sched.q(0.99)), ms(sched.q(0.999)), gc.count, ms(gc.q(0.99)), ms(gc.q(1)))
	if o.raw {
		fmt.Fprintf(out, "raw limits: kfake produce %s/s, consume %s/s; Redis SET+ZADD %s ticks/s (redis-benchmark -P 64 SET %s/s); ClickHouse insert %s rows/s (batch %d)\n",
			si(raw.produce), si(raw.consume), si(raw.redis), si(raw.redisBench), si(raw.clickhouse), raw.chBatch)
	}
	return nil
}

func benchConfig(dir string, o benchOpts, on map[string]bool) (config.Config, string, error) {
	ps, err := spawn.FreePorts(3)
	if err != nil {
		return config.Config{}, "", err
	}
	ports := make([]string, len(ps))
	for i, p := range ps {
		ports[i] = spawn.Addr(p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ingest:\n  binance: {enabled: false}\n  queue: 16384\n")
	fmt.Fprintf(&b, "bus:\n  listen: %s\n  data_dir: %s\n  partitions: %d\n", ports[0], filepath.Join(dir, "kafka"), o.partitions)
	if o.linger != "" {
		fmt.Fprintf(&b, "  linger: %s\n", o.linger)
	}
	for _, kv := range strings.Split(o.busYAML, ";") {
		if kv = strings.TrimSpace(kv); kv != "" {
			fmt.Fprintf(&b, "  %s\n", kv)
		}
	}
	fmt.Fprintf(&b, "api:\n  listen: %s\nlog: {level: %s}\nsinks:\n", ports[1], o.logLevel)
	en := func(n string) bool { return on[n] }
	fmt.Fprintf(&b, "  cache:\n    enabled: %v\n", en("cache"))
	if o.redis != "" {
		fmt.Fprintf(&b, "    redis: {addrs: [%q]}\n", o.redis)
	}
	fmt.Fprintf(&b, "  store:\n    enabled: %v\n", en("store"))
	if o.chURL != "" {
		fmt.Fprintf(&b, "    clickhouse: {url: %q, database: bench}\n", o.chURL)
	}
	fmt.Fprintf(&b, "  push:\n    enabled: %v\n    listen: %s\n", en("push"), ports[2])
	fmt.Fprintf(&b, "  strategy:\n    enabled: %v\n    strategies:\n", en("strategy"))
	for i := range min(4, o.pairs) {
		fmt.Fprintf(&b, "      - {name: s%d, type: sma_cross, exchange: bench, symbol: P%04dUSDT, fast: 5, slow: 20, bars: tick}\n", i, i)
	}
	fmt.Fprintf(&b, "  risk:\n    enabled: %v\n", en("risk"))
	yml := b.String()
	if o.extraSinkConfig != "" {
		if yml, err = mergeSinkYAML(yml, o.extraSinkConfig); err != nil {
			return config.Config{}, "", err
		}
	}
	path := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		return config.Config{}, "", err
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		return cfg, "", fmt.Errorf("bench config: %w\n%s", err, yml)
	}
	return cfg, ports[2], nil
}

// mergeSinkYAML inserts "name: {k: v}" overrides as extra keys of the
// generated sink sections ("push: {batch: {size: 1}}; store: {...}").
func mergeSinkYAML(yml, extra string) (string, error) {
	for _, part := range strings.Split(extra, ";") {
		name, body, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return "", fmt.Errorf("-sink-yaml %q: want sink: {key: value}", part)
		}
		body = strings.TrimSpace(body)
		body = strings.TrimSuffix(strings.TrimPrefix(body, "{"), "}")
		k, v, _ := strings.Cut(body, ":")
		marker := "  " + strings.TrimSpace(name) + ":\n"
		i := strings.Index(yml, marker)
		if i < 0 {
			return "", fmt.Errorf("-sink-yaml: no sink %q", strings.TrimSpace(name))
		}
		j := i + len(marker)
		yml = yml[:j] + "    " + strings.TrimSpace(k) + ": " + strings.TrimSpace(v) + "\n" + yml[j:]
	}
	return yml, nil
}

type hist struct {
	buckets []loadgen.Bucket
	count   float64
}

func (h hist) minus(b hist) hist {
	out := hist{count: h.count - b.count}
	for i, x := range h.buckets {
		c := x.Count
		if i < len(b.buckets) {
			c -= b.buckets[i].Count
		}
		out.buckets = append(out.buckets, loadgen.Bucket{UpperBound: x.UpperBound, Count: c})
	}
	return out
}

// q is the q-quantile in seconds; past the last finite bucket it is +Inf
// (printed as "≥ bound"): the histogram cannot say how far past.
func (h hist) q(q float64) float64 {
	v := loadgen.HistogramQuantile(q, slices.Clone(h.buckets), h.count)
	if n := len(h.buckets); n >= 2 && v >= h.buckets[n-2].UpperBound && h.buckets[n-2].Count < q*h.count {
		return math.Inf(1)
	}
	return v
}

type snapshot struct {
	at             time.Time
	sent, produced float64
	sink, lag      map[string]float64
	batches        map[string]float64 // successful WriteBatch calls
	hist           map[string]hist
}

func gatherSnap(g prometheus.Gatherer) snapshot {
	s := snapshot{sink: map[string]float64{}, lag: map[string]float64{}, hist: map[string]hist{}, batches: map[string]float64{}}
	mfs, _ := g.Gather()
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "tickflow_ingest_ticks_acked_total":
				s.produced += m.GetCounter().GetValue()
			case "tickflow_sink_ticks_total":
				s.sink[label(m, "sink")] += m.GetCounter().GetValue()
			case "tickflow_sink_batch_size":
				s.batches[label(m, "sink")] += float64(m.GetHistogram().GetSampleCount())
			case "tickflow_sink_consumer_lag":
				s.lag[label(m, "sink")] = m.GetGauge().GetValue()
			case "tickflow_sink_latency_seconds":
				if label(m, "from") != "receive" {
					continue
				}
				s.hist[label(m, "sink")] = promHist(m.GetHistogram())
			case "tickflow_ingest_ack_latency_seconds":
				s.hist[ackHist] = promHist(m.GetHistogram())
			}
		}
	}
	return s
}

// ackHist keys the producer's receive→acknowledged histogram in
// snapshot.hist, beside the sinks'.
const ackHist = " ack"

func promHist(ph *dto.Histogram) hist {
	h := hist{count: float64(ph.GetSampleCount())}
	for _, b := range ph.GetBucket() {
		h.buckets = append(h.buckets, loadgen.Bucket{UpperBound: b.GetUpperBound(), Count: float64(b.GetCumulativeCount())})
	}
	h.buckets = append(h.buckets, loadgen.Bucket{UpperBound: math.Inf(1), Count: h.count})
	return h
}

// wsProbe is one WebSocket client on the push feed, subscribed to every
// tick, recording frame-read → received latency from each tick's
// received_at_us while measuring.
type wsProbe struct {
	measure   atomic.Bool
	frames    atomic.Int64
	conflated atomic.Int64
	mu        sync.Mutex
	lat       []time.Duration
}

func (w *wsProbe) run(ctx context.Context, url, subscribe string) {
	var c *websocket.Conn
	for ctx.Err() == nil {
		var err error
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, _, err = websocket.Dial(dctx, url, nil)
		cancel()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // the push listener is starting
	}
	if c == nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	if err := c.Write(ctx, websocket.MessageText, []byte(subscribe)); err != nil {
		return
	}
	key := []byte(`"received_at_us":`)
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now().UnixMicro()
		if bytes.Contains(b[:min(len(b), 24)], []byte(`"conflated"`)) {
			w.conflated.Add(1)
			continue
		}
		i := bytes.Index(b, key)
		if i < 0 {
			continue
		}
		rest := b[i+len(key):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		us, err := strconv.ParseInt(string(rest[:j]), 10, 64)
		if err != nil {
			continue
		}
		w.frames.Add(1)
		if w.measure.Load() {
			w.mu.Lock()
			if len(w.lat) < 20_000_000 {
				w.lat = append(w.lat, time.Duration(now-us)*time.Microsecond)
			}
			w.mu.Unlock()
		}
	}
}

func (w *wsProbe) sorted() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := slices.Clone(w.lat)
	slices.Sort(l)
	return l
}

type rawLimits struct {
	produce, consume, redis, redisBench, clickhouse float64
	chBatch                                         int
}

// benchTicks are n ticks over pairs, the load source's shape, with JSON.
func benchTicks(n int, pairs []string) []tick.Tick {
	out := make([]tick.Tick, n)
	now := time.Now()
	for k := range out {
		t := &out[k]
		p := int64(5_000_000 + (k%len(pairs))*100 + k%7)
		*t = tick.Tick{Exchange: "bench", Symbol: pairs[k%len(pairs)], Timestamp: now.UnixMilli() + int64(k/len(pairs)), ReceivedAt: now.UnixMicro()}
		for _, d := range []struct {
			dst *apd.Decimal
			v   int64
			e   int32
		}{{&t.Price, p, -2}, {&t.Bid, p - 1, -2}, {&t.Ask, p + 1, -2}, {&t.Volume, int64(1_000_000 + k%1000), -4}, {&t.Open24h, p - 500, -2}} {
			d.dst.SetFinite(d.v, d.e)
		}
	}
	return out
}

func measureRaw(ctx context.Context, o benchOpts, pairs []string, on map[string]bool, dir string) rawLimits {
	var r rawLimits
	ticks := benchTicks(o.rawTicks, pairs)
	fail := func(what string, err error) { fmt.Fprintf(o.stderr, "bench: raw %s: %v\n", what, err) }

	// Bare kfake: the same records produced and consumed by plain kgo clients.
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "rawkafka")})
	if err != nil {
		fail("kfake", err)
	} else {
		defer emb.Close()
		cc := bus.ClientConfig{Brokers: emb.Addrs()}
		if err := bus.EnsureTopic(ctx, cc, "raw", int32(o.partitions), -1); err != nil {
			fail("kfake topic", err)
		} else {
			r.produce, r.consume = rawKafka(ctx, emb.Addrs(), ticks)
		}
	}
	// Redis: per tick SET latest + ZADD history, pipelined 1000 ticks at a time.
	if o.redis != "" && on["cache"] {
		if v, err := rawRedis(ctx, o.redis, ticks); err != nil {
			fail("redis", err)
		} else {
			r.redis = v
		}
		if v, err := redisBenchmark(ctx, o.redis); err != nil {
			fail("redis-benchmark", err)
		} else {
			r.redisBench = v
		}
	}
	// ClickHouse: the same rows as pre-encoded Native blocks, batch = the store's ceiling.
	if o.chURL != "" && on["store"] {
		r.chBatch = 50_000 // ClickHouse's own rate for large inserts, whatever the store's policy
		cfg := store.DefaultConfig()
		cfg.ClickHouse.URL, cfg.ClickHouse.Database = o.chURL, "bench_raw"
		s, err := store.New(sinks.Env{Name: "store"}.WithDefaults(), *cfg)
		if err == nil {
			err = s.Connect(ctx)
			defer s.Close(ctx)
		}
		if err == nil {
			var d time.Duration
			d, err = store.RawInsert(ctx, o.chURL, "bench_raw.market_ticks", ticks, r.chBatch)
			r.clickhouse = float64(len(ticks)) / d.Seconds()
		}
		if err != nil {
			fail("clickhouse", err)
		}
	}
	return r
}

func rawKafka(ctx context.Context, addrs []string, ticks []tick.Tick) (produce, consume float64) {
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("raw"), kgo.ProducerLinger(0), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, 0
	}
	defer prod.Close()
	recs := make([]*kgo.Record, len(ticks))
	for i := range ticks {
		recs[i] = &kgo.Record{Key: ticks[i].AppendKey(nil), Value: ticks[i].AppendJSON(nil)}
	}
	start := time.Now()
	for _, rec := range recs {
		prod.Produce(ctx, rec, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		return 0, 0
	}
	produce = float64(len(recs)) / time.Since(start).Seconds()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("raw"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return produce, 0
	}
	defer cons.Close()
	start = time.Now()
	for n := 0; n < len(recs) && ctx.Err() == nil; {
		n += cons.PollFetches(ctx).NumRecords()
	}
	return produce, float64(len(recs)) / time.Since(start).Seconds()
}

func rawRedis(ctx context.Context, addr string, ticks []tick.Tick) (float64, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	js := make([]string, len(ticks))
	for i := range ticks {
		js[i] = string(ticks[i].AppendJSON(nil))
	}
	start := time.Now()
	for i := 0; i < len(ticks); i += 1000 {
		cmds := make(rueidis.Commands, 0, 2000)
		for k := i; k < min(i+1000, len(ticks)); k++ {
			t := &ticks[k]
			cmds = append(cmds,
				c.B().Set().Key("raw:tick:"+t.Symbol).Value(js[k]).PxMilliseconds(3_600_000).Build(),
				c.B().Zadd().Key("raw:hist:"+t.Symbol).ScoreMember().ScoreMember(float64(t.Timestamp), js[k]).Build())
		}
		for _, res := range c.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				return 0, err
			}
		}
	}
	return float64(len(ticks)) / time.Since(start).Seconds(), nil
}

// redisBenchmark runs redis-benchmark's pipelined SET against addr, the
// server's own ceiling, when the binary is installed.
func redisBenchmark(ctx context.Context, addr string) (float64, error) {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-P", "64", "-n", "500000", "-q", "-t", "set").Output()
	if err != nil {
		return 0, err
	}
	// "SET: 1002004.00 requests per second, p50=..."
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out[bytes.LastIndexByte(bytes.TrimSpace(out), '\r')+1:])), "SET: "))
	if len(f) == 0 {
		return 0, fmt.Errorf("unexpected output %q", out)
	}
	return strconv.ParseFloat(f[0], 64)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for _, n := range sinks.Names() { // pipeline order
		if m[n] {
			out = append(out, n)
		}
	}
	return out
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func si(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || v == 0:
		return "0"
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func ratio(v, lim float64) string {
	if lim <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*v/lim)
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "–"
	}
	if math.IsInf(s, 1) {
		return "≥ 10 s"
	}
	return fmt.Sprintf("%.2f ms", s*1e3)
}

// startCPUProfile profiles the process into path until the returned func
// is called (once or more).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }, nil
}

func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("memprofile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("memprofile: %w", err)
	}
	return f.Close()
}
