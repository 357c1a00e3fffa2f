package push

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/tick"
)

// Fan-out benchmarks: K WebSocket clients on loopback, T ticks/s into the
// sink for a few seconds. The clients run in a child process (this test
// binary re-executed), so the server's memory per connection is measured
// alone; both processes share the machine's cores, as a browser-facing
// server and its clients would not. Run with:
//
//	go test -run '^$' -bench Fanout -benchtime 1x ./sinks/push/
//
// Each scenario reports delivered msgs/s, p50/p99/max latency from the
// tick's receive time (stamped just before WriteBatch) to the client's
// read, the server's memory per connection, and how many ticks slow
// clients had conflated. BenchmarkFanoutRaw is the baseline: the same
// frames written by one goroutine per connection with no hub, no
// subscriptions and no queue bounds.

const (
	benchPairs    = 100
	benchDuration = 5 * time.Second
	childEnv      = "TICKFLOW_PUSH_BENCH_CHILD"
)

type fanoutCase struct {
	clients int
	rate    int  // ticks per second in
	onePair bool // each client subscribes to one pair; otherwise to all
}

func (c fanoutCase) name() string {
	sub := "all"
	if c.onePair {
		sub = "onepair"
	}
	return fmt.Sprintf("clients=%d/ticks=%d/sub=%s", c.clients, c.rate, sub)
}

var fanoutCases = []fanoutCase{
	{clients: 100, rate: 10000, onePair: false},
	{clients: 100, rate: 10000, onePair: true},
	{clients: 1000, rate: 1000, onePair: false},
	{clients: 1000, rate: 1000, onePair: true},
	{clients: 10000, rate: 1000, onePair: true},
	{clients: 10000, rate: 100, onePair: false},
	{clients: 10000, rate: 1000, onePair: false},
}

func BenchmarkFanout(b *testing.B) {
	for _, fc := range fanoutCases {
		b.Run(fc.name(), func(b *testing.B) {
			for range b.N {
				runFanout(b, fc, false)
			}
		})
	}
}

func BenchmarkFanoutRaw(b *testing.B) {
	for _, fc := range fanoutCases {
		if fc.onePair {
			continue // the raw baseline has no subscriptions
		}
		b.Run(fc.name(), func(b *testing.B) {
			for range b.N {
				runFanout(b, fc, true)
			}
		})
	}
}

// childStats is what the client process reports.
type childStats struct {
	Messages int64   `json:"messages"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Closed   int64   `json:"closed"`
	Seconds  float64 `json:"seconds"`
}

func runFanout(b *testing.B, fc fanoutCase, raw bool) {
	var (
		url      string
		feed     func(ctx context.Context, batch []tick.Tick)
		stop     func()
		conns    func() int
		counters func() (conflated, dropped float64)
	)
	cfg := func(c *Config) {
		c.Limits.MaxConnections = fc.clients + 10
		c.Limits.MaxMessagesPerSecond = 1000
		c.Limits.MessageBurst = 1000
	}
	runtime.GC()
	before := heapAndStacks()
	if raw {
		r := startRawServer(b)
		url, feed, stop, conns = r.url, r.broadcast, r.close, r.count
		counters = func() (float64, float64) { return 0, 0 }
	} else {
		ts := startSink(b, cfg)
		url = ts.url()
		feed = func(ctx context.Context, batch []tick.Tick) {
			if err := ts.WriteBatch(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		stop = func() {}
		conns = func() int { return int(counter(ts, "tickflow_push_connections")) }
		counters = func() (float64, float64) {
			return counter(ts, "tickflow_push_conflated_ticks_total"), counter(ts, "tickflow_push_disconnects_total", "reason", "slow_consumer")
		}
	}
	defer stop()

	child := exec.Command(os.Args[0], "-test.run=^TestFanoutChild$", "-test.v")
	child.Env = append(os.Environ(), childEnv+"=1", "BENCH_URL="+url, "BENCH_CLIENTS="+strconv.Itoa(fc.clients),
		"BENCH_ONEPAIR="+strconv.FormatBool(fc.onePair))
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	lines := bufio.NewScanner(stdout)
	waitLine := func(prefix string) string {
		for lines.Scan() {
			if l := lines.Text(); bytes.HasPrefix([]byte(l), []byte(prefix)) {
				return l[len(prefix):]
			}
		}
		b.Fatalf("client process ended before %q", prefix)
		return ""
	}
	waitLine("READY")
	testkit.Eventually(b, time.Minute, "every client connected", func() bool { return conns() == fc.clients })
	runtime.GC()
	after := heapAndStacks()
	perConn := float64(after-before) / float64(fc.clients) / 1024

	// Feed: T ticks/s in 1 ms batches for benchDuration.
	b.ResetTimer()
	ctx := context.Background()
	perMs := max(1, fc.rate/1000)
	every := time.Duration(int64(time.Second) * int64(perMs) / int64(fc.rate))
	seq := int64(0)
	start := time.Now()
	next := start
	for time.Since(start) < benchDuration {
		batch := make([]tick.Tick, perMs)
		for i := range batch {
			seq++
			batch[i] = mkTick("sim", fmt.Sprintf("P%03dUSDT", seq%benchPairs), strconv.FormatInt(seq, 10), seq)
		}
		feed(ctx, batch)
		next = next.Add(every)
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // paces the load; not a synchronisation
		}
	}
	fed := time.Since(start)
	// Let the tail drain, then ask the client process for its numbers.
	time.Sleep(time.Second) // drain window before the count is taken
	_ = stdin.Close()
	var st childStats
	if err := json.Unmarshal([]byte(waitLine("STATS")), &st); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	conflated, dropped := counters()
	b.ReportMetric(float64(seq)/fed.Seconds(), "ticks_in/s")
	b.ReportMetric(float64(st.Messages)/fed.Seconds(), "delivered/s")
	b.ReportMetric(st.P50Ms, "p50_ms")
	b.ReportMetric(st.P99Ms, "p99_ms")
	b.ReportMetric(st.MaxMs, "max_ms")
	b.ReportMetric(perConn, "KiB/conn")
	b.ReportMetric(conflated, "conflated")
	b.ReportMetric(dropped, "slow_dropped")
	b.ReportMetric(float64(st.Closed), "closed")
}

func heapAndStacks() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// TestFanoutChild is the benchmark's client process; it does nothing in a
// normal test run.
func TestFanoutChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("client process for BenchmarkFanout")
	}
	url := os.Getenv("BENCH_URL")
	n, _ := strconv.Atoi(os.Getenv("BENCH_CLIENTS"))
	onePair := os.Getenv("BENCH_ONEPAIR") == "true"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var (
		hist     latencyHist
		messages atomic.Int64
		closed   atomic.Int64
		wg       sync.WaitGroup
		dials    = make(chan struct{}, 64)
		start    = time.Now()
		conns    = make([]*websocket.Conn, n)
	)
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext, MaxIdleConnsPerHost: -1}}
	for i := range n {
		dials <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
			<-dials
			if err != nil {
				fmt.Fprintln(os.Stderr, "dial:", err)
				closed.Add(1)
				return
			}
			c.SetReadLimit(1 << 20)
			sub := `{"type":"subscribe","channels":["tick"]}`
			if onePair {
				sub = fmt.Sprintf(`{"type":"subscribe","channels":["tick"],"symbols":["P%03dUSDT"]}`, i%benchPairs)
			}
			if err := c.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
				closed.Add(1)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	fmt.Println("READY")
	for _, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, b, err := c.Read(ctx)
				if err != nil {
					if ctx.Err() == nil {
						closed.Add(1)
					}
					return
				}
				now := time.Now().UnixMicro()
				if us, ok := receivedAt(b); ok {
					messages.Add(1)
					hist.add(now - us)
				}
			}
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // the benchmark closes stdin when done
	st := childStats{
		Messages: messages.Load(), Closed: closed.Load(), Seconds: time.Since(start).Seconds(),
		P50Ms: hist.quantile(0.50), P99Ms: hist.quantile(0.99), MaxMs: hist.quantile(1),
	}
	out, _ := json.Marshal(st)
	fmt.Println("STATS" + string(out))
	cancel()
	for _, c := range conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
	wg.Wait()
}

var receivedKey = []byte(`"received_at_us":`)

// receivedAt pulls received_at_us out of a tick frame without decoding the
// rest: the client process must not be the bottleneck it measures.
func receivedAt(b []byte) (int64, bool) {
	i := bytes.Index(b, receivedKey)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(receivedKey):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return v, err == nil
}

// latencyHist counts latencies in 10 µs buckets up to 10 s.
type latencyHist struct {
	buckets [1_000_000]atomic.Int64
	total   atomic.Int64
}

func (h *latencyHist) add(us int64) {
	i := max(0, min(us/10, int64(len(h.buckets)-1)))
	h.buckets[i].Add(1)
	h.total.Add(1)
}

func (h *latencyHist) quantile(q float64) float64 {
	total := h.total.Load()
	if total == 0 {
		return 0
	}
	want := int64(q * float64(total))
	if want >= total {
		want = total - 1
	}
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > want {
			return float64(i*10) / 1000
		}
	}
	return float64(len(h.buckets)*10) / 1000
}

// rawServer is the baseline: accept, then one goroutine per connection
// writing every broadcast frame, with an unbounded channel stand-in (a
// generous buffer) and no subscriptions, conflation or limits.
type rawServer struct {
	url   string
	mu    sync.Mutex
	subs  map[chan []byte]struct{}
	srv   *http.Server
	count func() int
}

func startRawServer(b *testing.B) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	r := &rawServer{url: "ws://" + ln.Addr().String() + "/ws", subs: map[chan []byte]struct{}{}}
	r.count = func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.subs)
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		c, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { // discard what the client sends
			defer cancel()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		ch := make(chan []byte, 1<<16)
		r.mu.Lock()
		r.subs[ch] = struct{}{}
		r.mu.Unlock()
		defer func() {
			r.mu.Lock()
			delete(r.subs, ch)
			r.mu.Unlock()
		}()
		for {
			select {
			case m := <-ch:
				if c.Write(ctx, websocket.MessageText, m) != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	})}
	go func() { _ = r.srv.Serve(ln) }()
	return r
}

func (r *rawServer) broadcast(_ context.Context, batch []tick.Tick) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range batch {
		m := encodeTick(nil, &batch[i], -1, 0)
		for ch := range r.subs {
			select {
			case ch <- m:
			default: // full: the baseline drops rather than blocks
			}
		}
	}
}

func (r *rawServer) close() { _ = r.srv.Close() }
