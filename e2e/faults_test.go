package e2e

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
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/internal/wstest"
)

// The fault suite: the real pipeline as a separate process (simulated
// exchange and/or a local Binance-format exchange, or local OKX, Bybit,
// Coinbase and Kraken exchanges for the malformed fault → embedded broker →
// cache on a real Redis, store on a real ClickHouse over HTTP, push), one
// fault at a time and then all together. Everything is counted from
// outside tickflow: kcat on the broker's log, redis-cli on the cache's
// history, clickhouse-client on the store's table, a WebSocket client on
// the push feed. Each row prints what the sources' exchange sent (for the
// local exchange), what tickflow accepted and the broker acknowledged (its
// exit summaries, clean runs only), the ticks in Kafka and in each sink,
// duplicates, and the recovery time.
//
// CI mode (default) keeps each fault short; TICKFLOW_FAULTS=long runs the
// storm for a minute, SIGKILLs ten times and holds each outage longer.
//
//	go test -run TestFaultSuite -v -count=1 .                       # CI mode
//	TICKFLOW_FAULTS=long go test -run TestFaultSuite -v -count=1 .  # the docs' table
func TestFaultSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("fault suite: not in -short")
	}
	testsvc.NeedBinary(t, "kcat", "kcat")
	testsvc.NeedBinary(t, "redis-cli", "redis-tools")
	testsvc.NeedBinary(t, "clickhouse-client", "clickhouse-client")
	long := os.Getenv("TICKFLOW_FAULTS") == "long"
	s := &suite{t: t, long: long, redis: testsvc.StartRedis(t), ch: testsvc.StartClickHouse(t)}
	start := time.Now()
	t.Run("redis", s.redisKilled)
	t.Run("clickhouse", s.clickhouseKilled)
	t.Run("push-clients", s.pushClientsCut)
	t.Run("sigkill", s.sigkill)
	t.Run("storm", s.storm)
	t.Run("malformed", s.malformed)
	t.Run("full-disk", s.fullDisk)
	t.Run("together", s.together)
	s.print(time.Since(start))
}

type suite struct {
	t     *testing.T
	long  bool
	redis *testsvc.Redis
	ch    *testsvc.ClickHouse

	mu   sync.Mutex
	rows []faultRow
}

// faultRow is one line of the table. -1 means not measured.
type faultRow struct {
	fault                       string
	exchangeSent, exchangeLost  int64 // the local exchange: frames written; frames made while no connection was up
	accepted, acked, unproduced int64 // tickflow's exit summaries (clean exits only)
	kafka, kafkaDup             int64 // records in the tick topic; records beyond the distinct ticks
	redis                       int64 // distinct ticks in the cache's history
	chRows, chDistinct          int64 // rows in ClickHouse; distinct ticks among them (reads group by tick)
	push                        int64 // ticks a steady push client received
	recovery                    time.Duration
	note                        string
}

func (s *suite) add(r faultRow) {
	s.mu.Lock()
	s.rows = append(s.rows, r)
	s.mu.Unlock()
	s.t.Logf("fault %-26s %+v", r.fault, r)
}

// dur prints a recovery time; zero is "not measured".
func dur(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return d.Round(time.Millisecond).String()
}

func (s *suite) print(total time.Duration) {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(w, "fault\texchange sent\tsent while down\taccepted\tacked\tunproduced\tin Kafka\tKafka dups\tRedis\tClickHouse rows\tClickHouse distinct\tpush client\trecovery\tnote")
	n := func(v int64) string {
		if v < 0 {
			return "–"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, r := range s.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.fault, n(r.exchangeSent), n(r.exchangeLost),
			n(r.accepted), n(r.acked), n(r.unproduced), n(r.kafka), n(r.kafkaDup), n(r.redis), n(r.chRows), n(r.chDistinct), n(r.push),
			dur(r.recovery), r.note)
	}
	w.Flush()
	mode := "ci"
	if s.long {
		mode = "long"
	}
	s.t.Logf("fault suite (%s mode, %s wall):\n%s", mode, total.Round(time.Second), b.String())
	if out := os.Getenv("TICKFLOW_FAULTS_OUT"); out != "" {
		_ = os.WriteFile(out, b.Bytes(), 0o644)
	}
}

// rig is one pipeline: a data dir, ports, a ClickHouse database and a
// Redis db of its own, and the tickflow processes run on them in turn.
type rig struct {
	s                          *suite
	t                          *testing.T
	dir, dataDir, stateDir     string
	busPort, apiPort, pushPort int
	db                         string
	redisDB                    int
	sim                        bool
	binanceURL                 string
	extra                      string // more ingest sources, one YAML line each
	p                          *proc
	sum                        faultRow // exit summaries added up
}

var rigs atomic.Int32

func (s *suite) rig(t *testing.T, dataDir string) *rig {
	n := rigs.Add(1)
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = filepath.Join(dir, "kafka")
	}
	r := &rig{s: s, t: t, dir: dir, dataDir: dataDir, busPort: testsvc.FreePort(t), apiPort: testsvc.FreePort(t), pushPort: testsvc.FreePort(t),
		db: fmt.Sprintf("faults_%d", n), redisDB: int(n), sim: true}
	return r
}

func (r *rig) config(sources bool) string {
	sim, bin := "false", "binance: {enabled: false}"
	if sources && r.sim {
		sim = "true"
	}
	if sources && r.binanceURL != "" {
		bin = fmt.Sprintf("binance: {enabled: true, url: %q, symbols: [BTCUSDT, ETHUSDT], backoff_min: 20ms, backoff_max: 200ms}", r.binanceURL)
	}
	if sources && r.extra != "" {
		bin += "\n" + r.extra
	}
	risk := ""
	if r.stateDir != "" {
		risk = fmt.Sprintf("  risk: {enabled: true, state_dir: %q}\n", r.stateDir)
	}
	return fmt.Sprintf(`
ingest:
  %s
  sim: {enabled: %s, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], interval: 5ms, seed: 42}
bus: {listen: "127.0.0.1:%d", data_dir: %q, partitions: 4}
sinks:
  cache: {enabled: true, history: 100000, redis: {addrs: [%q], db: %d}}
  store: {enabled: true, batch: {size: 500, max_wait: 100ms}, clickhouse: {url: %q, database: %s}}
  push: {enabled: true, listen: "127.0.0.1:%d"}
%sapi: {listen: "127.0.0.1:%d"}
log: {format: json}
`, bin, sim, r.busPort, r.dataDir, r.s.redis.Addr(), r.redisDB, r.s.ch.HTTPURL(), r.db, r.pushPort, risk, r.apiPort)
}

func (r *rig) groups() []string {
	g := []string{"tickflow.cache", "tickflow.store"} // push: a per-instance group (tickflow.push.<instance>), live only
	if r.stateDir != "" {
		g = append(g, "tickflow.risk")
	}
	return g
}

func (r *rig) base() string { return fmt.Sprintf("http://127.0.0.1:%d", r.apiPort) }

// start runs tickflow and waits until it is ready.
func (r *rig) start(sources bool) {
	r.t.Helper()
	r.p = startTickflow(r.t, r.dir, r.config(sources))
	r.p.waitLog(r.t, "api start", msgIs("started", "component", "api"))
	waitHTTP(r.t, r.base()+"/readyz", http.StatusOK)
}

// stop sends SIGTERM and adds the exit summary to the rig's account.
func (r *rig) stop() {
	r.t.Helper()
	if err := r.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	sm := r.p.waitLog(r.t, "ingest summary", msgIs("ingest summary"))
	if err := r.p.wait(); err != nil {
		r.t.Errorf("tickflow exit: %v (want 0)", err)
	}
	for k, dst := range map[string]*int64{"accepted": &r.sum.accepted, "acked": &r.sum.acked, "unproduced": &r.sum.unproduced} {
		v, _ := sm[k].(float64)
		*dst += int64(v)
	}
	r.p = nil
}

// kill SIGKILLs tickflow: no summary, no drain.
func (r *rig) kill() {
	r.t.Helper()
	_ = r.p.cmd.Process.Kill()
	_ = r.p.wait()
	r.p = nil
}

// settle stops tickflow, runs it again without sources until every sink
// group has committed the whole log, and stops it again: then the sinks
// hold everything they will ever hold.
func (r *rig) settle() {
	r.t.Helper()
	if r.p != nil {
		r.stop()
	}
	r.start(false)
	adm := admin(r.t, fmt.Sprintf("127.0.0.1:%d", r.busPort))
	testkit.Eventually(r.t, 60*time.Second, "every sink group committed the whole log", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
		if err != nil {
			return false
		}
		var end int64
		ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
		for _, g := range r.groups() {
			committed, err := adm.FetchOffsets(ctx, g)
			if err != nil {
				return false
			}
			var sum int64
			committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
			if sum != end {
				return false
			}
		}
		return true
	})
	r.stop()
}

// count fills the outside counts of row: kcat on the log (through a broker
// started on the data dir, tickflow being stopped), redis-cli and
// clickhouse-client on the sinks.
func (r *rig) count(row *faultRow) { r.countFor(row, "") }

// countFor is count for one exchange's ticks ("" is every exchange's).
func (r *rig) countFor(row *faultRow, exchange string) {
	r.t.Helper()
	row.accepted, row.acked, row.unproduced = r.sum.accepted, r.sum.acked, r.sum.unproduced
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: r.dataDir})
	if err != nil {
		r.t.Fatal(err)
	}
	defer emb.Close()
	out, err := exec.Command("kcat", "-b", emb.Addrs()[0], "-C", "-t", "market_data.ticks", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n").Output()
	if err != nil {
		r.t.Fatalf("kcat: %v", err)
	}
	distinct := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "\t")
		var v struct {
			Exchange   string `json:"exchange"`
			Timestamp  int64  `json:"timestamp"`
			ReceivedAt int64  `json:"received_at_us"`
		}
		if err := json.Unmarshal([]byte(val), &v); err != nil {
			r.t.Fatalf("kcat line %q: %v", sc.Text(), err)
		}
		if exchange != "" && v.Exchange != exchange {
			continue
		}
		row.kafka++
		distinct[fmt.Sprintf("%s|%d|%d", key, v.Timestamp, v.ReceivedAt)] = true
	}
	row.kafkaDup = row.kafka - int64(len(distinct))

	pattern, where := "market_data:tick_history:*", ""
	if exchange != "" {
		pattern, where = "market_data:tick_history:"+exchange+":*", fmt.Sprintf(" WHERE exchange = '%s'", exchange)
	}
	keys, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", addrPort(r.s.redis.Addr()), "-n", strconv.Itoa(r.redisDB), "--scan", "--pattern", pattern).Output()
	if err != nil {
		r.t.Fatalf("redis-cli --scan: %v", err)
	}
	for _, k := range strings.Fields(string(keys)) {
		n, err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", addrPort(r.s.redis.Addr()), "-n", strconv.Itoa(r.redisDB), "ZCARD", k).Output()
		if err != nil {
			r.t.Fatalf("redis-cli ZCARD: %v", err)
		}
		v, _ := strconv.ParseInt(strings.TrimSpace(string(n)), 10, 64)
		row.redis += v
	}

	q := fmt.Sprintf("SELECT count(), uniqExact(exchange, symbol, timestamp, received_at) FROM %s.market_ticks%s", r.db, where)
	res, err := exec.Command("clickhouse-client", "--port", addrPort(r.s.ch.TCPAddr()), "--query", q).Output()
	if err != nil {
		r.t.Fatalf("clickhouse-client: %v", err)
	}
	if f := strings.Fields(string(res)); len(f) == 2 {
		row.chRows, _ = strconv.ParseInt(f[0], 10, 64)
		row.chDistinct, _ = strconv.ParseInt(f[1], 10, 64)
	}
}

// check fails the test unless every acknowledged tick reached every sink
// exactly once as the sinks show it.
func (r *rig) check(row faultRow) {
	r.t.Helper()
	distinct := row.kafka - row.kafkaDup
	if row.kafkaDup != 0 {
		r.t.Errorf("%d duplicate records in Kafka", row.kafkaDup)
	}
	if row.redis != distinct || row.chDistinct != distinct {
		r.t.Errorf("Kafka holds %d distinct ticks; Redis %d, ClickHouse %d distinct", distinct, row.redis, row.chDistinct)
	}
	if row.accepted >= 0 && row.unproduced != row.accepted-row.acked {
		r.t.Errorf("summaries: accepted %d, acked %d, unproduced %d: unproduced must be accepted - acked", row.accepted, row.acked, row.unproduced)
	}
}

func addrPort(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func (s *suite) hold(short, long time.Duration) time.Duration {
	if s.long {
		return long
	}
	return short
}

// wait lets ticks flow for d: real time is what the fault is about.
func wait(d time.Duration) { <-time.After(d) }

// readyAfter polls /readyz until 200 and returns how long that took.
func (r *rig) readyAfter(from time.Time) time.Duration {
	r.t.Helper()
	waitHTTP(r.t, r.base()+"/readyz", http.StatusOK)
	return time.Since(from)
}

func (s *suite) redisKilled(t *testing.T) {
	r := s.rig(t, "")
	r.start(true)
	wait(s.hold(2*time.Second, 10*time.Second))
	s.redis.Stop()
	wait(s.hold(2*time.Second, 10*time.Second))
	waitStatus(t, r.base()+"/readyz", http.StatusServiceUnavailable)
	s.redis.Restart()
	rec := r.readyAfter(time.Now())
	wait(time.Second)
	failed := metricSum(t, r.base(), "tickflow_sink_batches_total", `sink="cache"`, `result="error"`)
	r.settle()
	row := faultRow{fault: "Redis killed, restarted", exchangeSent: -1, exchangeLost: -1, push: -1, recovery: rec,
		note: fmt.Sprintf("cache retried %v failed batches; recovery: restart → /readyz 200", failed)}
	r.count(&row)
	r.check(row)
	s.add(row)
}

func (s *suite) clickhouseKilled(t *testing.T) {
	r := s.rig(t, "")
	r.start(true)
	wait(s.hold(2*time.Second, 10*time.Second))
	if err := s.ch.Kill(); err != nil {
		t.Fatal(err)
	}
	wait(s.hold(2*time.Second, 10*time.Second))
	waitStatus(t, r.base()+"/readyz", http.StatusServiceUnavailable)
	at := time.Now()
	if err := s.ch.Start(); err != nil {
		t.Fatal(err)
	}
	rec := r.readyAfter(at)
	wait(time.Second)
	failed := metricSum(t, r.base(), "tickflow_sink_batches_total", `sink="store"`, `result="error"`)
	r.settle()
	row := faultRow{fault: "ClickHouse killed, restarted", exchangeSent: -1, exchangeLost: -1, push: -1, recovery: rec,
		note: fmt.Sprintf("store retried %v failed batches; recovery: server start → /readyz 200", failed)}
	r.count(&row)
	r.check(row)
	s.add(row)
}

// faultPushClient counts tick frames on one subscription until ctx ends.
type faultPushClient struct {
	ticks, snapshots atomic.Int64
	conn             *websocket.Conn
	done             chan struct{}
}

func dialFaultPush(t *testing.T, ctx context.Context, port int) *faultPushClient {
	t.Helper()
	c, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://127.0.0.1"}}})
	if err != nil {
		t.Fatalf("push dial: %v", err)
	}
	c.SetReadLimit(1 << 20)
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channels":["tick"]}`)); err != nil {
		t.Fatal(err)
	}
	pc := &faultPushClient{conn: c, done: make(chan struct{})}
	go func() {
		defer close(pc.done)
		subscribed := false
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var m struct{ Type string }
			_ = json.Unmarshal(b, &m)
			switch {
			case m.Type == "subscribed":
				subscribed = true
			case m.Type == "tick" && subscribed:
				pc.ticks.Add(1)
			case m.Type == "snapshot":
				pc.snapshots.Add(1)
			}
		}
	}()
	return pc
}

// pushClientsCut: a steady client stays; others connect and are cut
// abruptly (no close frame) again and again; hostile ones too: one never
// reads, one sends an oversized frame, one floods messages, one opens a
// TCP connection and never finishes the handshake. The steady client must
// keep receiving and the pipeline must lose nothing.
func (s *suite) pushClientsCut(t *testing.T) {
	r := s.rig(t, "")
	r.start(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	steady := dialFaultPush(t, ctx, r.pushPort)
	hostile(t, ctx, r.pushPort)
	cuts := int(s.hold(20, 200))
	for range cuts {
		c := dialFaultPush(t, ctx, r.pushPort)
		testkit.Eventually(t, 10*time.Second, "cut client got ticks", func() bool { return c.ticks.Load() > 0 })
		c.conn.CloseNow()
		<-c.done
	}
	before := steady.ticks.Load()
	wait(time.Second)
	if steady.ticks.Load() == before {
		t.Errorf("the steady push client stopped receiving")
	}
	waitHTTP(t, r.base()+"/readyz", http.StatusOK)
	got := steady.ticks.Load()
	r.settle()
	row := faultRow{fault: fmt.Sprintf("push: %d clients cut + hostile", cuts), exchangeSent: -1, exchangeLost: -1, push: got,
		note: "push client: ticks the steady client got (live only, no replay)"}
	r.count(&row)
	r.check(row)
	s.add(row)
}

// hostile opens the misbehaving clients.
func hostile(t *testing.T, ctx context.Context, port int) {
	t.Helper()
	url := fmt.Sprintf("ws://127.0.0.1:%d/ws", port)
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"http://127.0.0.1"}}}
	// Never reads: subscribes to everything and sits.
	if c, _, err := websocket.Dial(ctx, url, opts); err == nil {
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"subscribe","channels":["tick"]}`))
		t.Cleanup(func() { c.CloseNow() })
	}
	// Oversized frame.
	if c, _, err := websocket.Dial(ctx, url, opts); err == nil {
		_ = c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("x"), 64<<10))
		t.Cleanup(func() { c.CloseNow() })
	}
	// Flood of messages.
	if c, _, err := websocket.Dial(ctx, url, opts); err == nil {
		go func() {
			for i := 0; i < 1000 && ctx.Err() == nil; i++ {
				if c.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)) != nil {
					return
				}
			}
		}()
		t.Cleanup(func() { c.CloseNow() })
	}
	// Half-open: TCP connected, handshake never finished.
	var d net.Dialer
	if conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\n")
		t.Cleanup(func() { conn.Close() })
	}
}

// sigkill: the whole process SIGKILLed repeatedly mid-stream, restarted on
// the same data dir each time.
func (s *suite) sigkill(t *testing.T) {
	r := s.rig(t, "")
	kills := int(s.hold(3, 10))
	var restart time.Duration
	for i := range kills {
		at := time.Now()
		r.start(true)
		if i > 0 {
			restart += time.Since(at)
		}
		wait(s.hold(1500*time.Millisecond, 4*time.Second))
		r.kill()
	}
	r.start(true)
	wait(time.Second)
	r.settle()
	row := faultRow{fault: fmt.Sprintf("SIGKILL ×%d", kills), exchangeSent: -1, exchangeLost: -1, push: -1,
		recovery: restart / time.Duration(max(1, kills-1)),
		note:     "accepted/acked: clean runs only; ticks in the queue or unacked at each kill are lost (sim: never counted); recovery: start → /readyz 200"}
	r.count(&row)
	r.check(row)
	s.add(row)
}

// exchange is a local Binance-format exchange making ticker frames for two
// pairs at a fixed rate whether or not a client is connected, so that what
// it made while no connection was up is known.
type exchange struct {
	srv           *wstest.Server
	mu            sync.Mutex
	out           chan string // the connected client's frames; nil while none
	made          atomic.Int64
	sent          atomic.Int64 // valid frames written to a connection
	lost          atomic.Int64 // made while no connection was up, or not written before a cut
	malformed     atomic.Int64 // malformed frames written
	connLife      time.Duration
	malformedEach int64
}

func newExchange(t *testing.T, connLife time.Duration) *exchange {
	ex := &exchange{connLife: connLife, malformedEach: 50}
	ex.srv = wstest.NewServer(t, clock.Real, func(c *wstest.Conn) {
		out := make(chan string, 1024)
		ex.mu.Lock()
		ex.out = out
		ex.mu.Unlock()
		defer func() {
			ex.mu.Lock()
			if ex.out == out {
				ex.out = nil
			}
			ex.mu.Unlock()
		}()
		defer func() {
			// Frames made for this connection and not written when it was
			// cut: the client never saw them.
			ex.mu.Lock()
			if ex.out == out {
				ex.out = nil
			}
			ex.mu.Unlock()
			for {
				select {
				case <-out:
					ex.lost.Add(1)
				default:
					return
				}
			}
		}()
		cut := time.After(ex.connLife)
		for {
			select {
			case f := <-out:
				c.Send(f)
				if strings.HasSuffix(f, `"E":`) {
					ex.malformed.Add(1)
				} else {
					ex.sent.Add(1)
				}
			case <-cut:
				return
			case <-c.Gone.Done():
				return
			}
		}
	})
	return ex
}

// run makes frames every 2 ms until ctx ends.
func (ex *exchange) run(ctx context.Context) {
	tk := time.NewTicker(2 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		n := ex.made.Add(1)
		e := time.Now().UnixMilli()
		sym := []string{"BTCUSDT", "ETHUSDT"}[n%2]
		f := fmt.Sprintf(`{"stream":"%s@ticker","data":{"e":"24hrTicker","E":%d,"s":"%s","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"%d.25","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}}`,
			strings.ToLower(sym), e, sym, n)
		if n%ex.malformedEach == 0 {
			f = `{"stream":"btcusdt@ticker","data":{"e":"24hrTicker","E":` // torn
		}
		ex.mu.Lock()
		out := ex.out
		ex.mu.Unlock()
		if out == nil {
			ex.lost.Add(1)
			continue
		}
		select {
		case out <- f:
		default:
			ex.lost.Add(1)
		}
	}
}

// storm: the exchange cuts the connection every 300 ms, for 10 s (a minute
// in long mode), and every 50th frame is malformed.
func (s *suite) storm(t *testing.T) {
	ex := newExchange(t, 300*time.Millisecond)
	r := s.rig(t, "")
	r.sim = false
	r.binanceURL = ex.srv.URL()
	r.start(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ex.run(ctx) }()
	wait(s.hold(10*time.Second, 60*time.Second))
	cancel()
	<-done
	testkit.Eventually(t, 10*time.Second, "last frames handed over", func() bool {
		return bytes.Contains(metrics(t, r.base()), []byte("tickflow_ingest_ticks_acked_total"))
	})
	malformed := metricSum(t, r.base(), "tickflow_ingest_malformed_frames_total")
	conns := len(ex.srv.Conns())
	hs := ex.srv.Attempts()
	var down time.Duration
	if len(hs) > 1 {
		down = (hs[len(hs)-1].Sub(hs[0]))/time.Duration(len(hs)-1) - ex.connLife
	}
	r.settle()
	row := faultRow{fault: fmt.Sprintf("exchange storm: %d connections", conns), exchangeSent: ex.sent.Load(), exchangeLost: ex.lost.Load(), push: -1, recovery: down,
		note: fmt.Sprintf("cut every 300 ms; %d malformed frames sent, %v counted malformed; recovery: mean cut → next handshake (connects paced at Binance's 300 per 5 min)", ex.malformed.Load(), malformed)}
	r.count(&row)
	r.check(row)
	if int64(malformed) != ex.malformed.Load() {
		t.Errorf("malformed frames: sent %d, counted %v", ex.malformed.Load(), malformed)
	}
	// Every valid frame written to a connection is a tick in Kafka, unless
	// the connection was cut with it in flight (written, not yet read).
	if row.kafka > row.exchangeSent {
		t.Errorf("Kafka holds %d ticks, the exchange sent %d", row.kafka, row.exchangeSent)
	}
	s.add(row)
}

// fullDisk: bus.data_dir and the risk sink's state_dir on a 20 MiB tmpfs,
// filled with a ballast file for a few seconds, then freed.
func (s *suite) fullDisk(t *testing.T) {
	fs := testsvc.Tmpfs(t, 20)
	r := s.rig(t, filepath.Join(fs, "kafka"))
	r.stateDir = filepath.Join(fs, "risk")
	r.start(true)
	wait(time.Second)
	testsvc.Fill(t, fs, "ballast")
	body := waitStatus(t, r.base()+"/readyz", http.StatusServiceUnavailable)
	if !strings.Contains(string(body), "broker") || !strings.Contains(string(body), "full") {
		t.Errorf("/readyz does not name the broker's full disk: %s", body)
	}
	wait(s.hold(3*time.Second, 20*time.Second))
	at := time.Now()
	if err := os.Remove(filepath.Join(fs, "ballast")); err != nil {
		t.Fatal(err)
	}
	rec := r.readyAfter(at)
	wait(time.Second)
	refused := metricSum(t, r.base(), "tickflow_broker_storage_refused_requests_total")
	blocked := metricSum(t, r.base(), "tickflow_ingest_queue_blocked_seconds_total")
	riskErr := metricSum(t, r.base(), "tickflow_sink_batches_total", `sink="risk"`, `result="error"`)
	r.stop()
	if refused == 0 {
		t.Error("the broker refused no produce request: the disk never filled")
	}
	if r.sum.unproduced != 0 || r.sum.accepted != r.sum.acked {
		t.Errorf("full disk: accepted %d, acked %d, unproduced %d: want every accepted tick acknowledged", r.sum.accepted, r.sum.acked, r.sum.unproduced)
	}
	r.settle()
	row := faultRow{fault: "full disk (broker + risk state)", exchangeSent: -1, exchangeLost: -1, push: -1, recovery: rec,
		note: fmt.Sprintf("broker refused %v produce requests (retriable); sim blocked %.1f s on the full queue; risk retried %v batches (journal); recovery: space freed → /readyz 200", refused, blocked, riskErr)}
	r.count(&row)
	r.check(row)
	if row.kafka != row.accepted {
		t.Errorf("Kafka holds %d ticks, tickflow accepted %d", row.kafka, row.accepted)
	}
	s.add(row)
}

// together: the sim and a stormy exchange at once, hostile push clients,
// Redis and ClickHouse killed and restarted, a SIGKILL, a full disk.
func (s *suite) together(t *testing.T) {
	ex := newExchange(t, 300*time.Millisecond)
	fs := testsvc.Tmpfs(t, 20)
	r := s.rig(t, filepath.Join(fs, "kafka"))
	r.binanceURL = ex.srv.URL()
	r.start(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); ex.run(ctx) }()
	hostile(t, ctx, r.pushPort)
	step := s.hold(1500*time.Millisecond, 8*time.Second)
	wait(step)
	s.redis.Stop()
	_ = s.ch.Kill()
	testsvc.Fill(t, fs, "ballast")
	wait(step)
	r.kill()
	_ = os.Remove(filepath.Join(fs, "ballast"))
	s.redis.Restart()
	if err := s.ch.Start(); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	r.start(true)
	hostile(t, ctx, r.pushPort)
	rec := time.Since(at)
	wait(step)
	cancel()
	<-done
	r.settle()
	row := faultRow{fault: "all together", exchangeSent: ex.sent.Load(), exchangeLost: ex.lost.Load(), push: -1, recovery: rec,
		note: "one SIGKILL: accepted/acked from the clean run only"}
	r.count(&row)
	r.check(row)
	s.add(row)
}

// waitStatus polls url until it answers status and returns the body.
func waitStatus(t *testing.T, url string, status int) []byte {
	t.Helper()
	var body []byte
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("GET %s → %d", url, status), func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == status
	})
	return body
}

func metrics(t *testing.T, base string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// metricSum adds up every sample of a metric family on /metrics whose
// labels contain each of match.
func metricSum(t *testing.T, base, name string, match ...string) float64 {
	t.Helper()
	var sum float64
next:
	for _, line := range strings.Split(string(metrics(t, base)), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(line, m) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// badFrame is one malformed frame in an exchange's format and the reason
// tickflow_ingest_malformed_frames_total must count it under.
type badFrame struct {
	frame  string
	binary bool
	reason string
}

// malformedExchange is a local exchange in one venue's format for the
// malformed fault: valid frames (plain and with fields the decoder has
// never heard of) next to malformed ones.
type malformedExchange struct {
	name, cfg, ack string
	// valid is a ticker frame for the subscribed pair with last price
	// price at exchange time ms, extra appended to the entry's fields.
	valid func(price string, ms int64, seq int, extra string) string
	bad   []badFrame

	srv       *wstest.Server
	sent      atomic.Int64 // valid frames written
	malformed map[string]int64
	done      chan struct{}
}

const malformedRounds = 120

// serve: on the first connection, after the subscribe, rounds of a valid
// frame, a valid frame with unknown fields and one malformed frame (each
// kind in turn), then one frame over the read limit (skipped and counted as
// too_large; the connection stays); later connections get the ack and
// nothing else.
func (mx *malformedExchange) serve(t *testing.T) {
	mx.malformed = map[string]int64{}
	mx.done = make(chan struct{})
	mx.srv = wstest.NewServer(t, clock.Real, func(c *wstest.Conn) {
		for len(c.Sent()) == 0 {
			select {
			case <-c.Gone.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
		if mx.ack != "" {
			c.Send(mx.ack)
		}
		if c.N > 0 {
			c.WaitGone()
			return
		}
		base := time.Now().UnixMilli()
		seq := 0
		for i := range malformedRounds {
			for _, extra := range []string{"", `,"brandNew":{"x":[1,2]},"tsNano":"1"`} {
				seq++
				c.Send(mx.valid(fmt.Sprintf("60000.%03d", seq), base+int64(seq), seq, extra))
				mx.sent.Add(1)
			}
			b := mx.bad[i%len(mx.bad)]
			typ := websocket.MessageText
			if b.binary {
				typ = websocket.MessageBinary
			}
			if err := c.WS.Write(c.Context(), typ, []byte(b.frame)); err != nil {
				t.Errorf("%s: write: %v", mx.name, err)
				return
			}
			mx.malformed[b.reason]++
			time.Sleep(time.Millisecond) // the exchange's pace
		}
		// Over the 64 KiB read limit: a malformed frame like the others.
		c.Send(`{"x":"` + strings.Repeat("a", 70<<10) + `"}`)
		mx.malformed["too_large"]++
		close(mx.done)
		c.WaitGone()
	})
}

func (mx *malformedExchange) malformedTotal() (n int64) {
	for _, v := range mx.malformed {
		n += v
	}
	return n
}

// commonBad are the kinds every venue's decoder gets: bad JSON, garbage
// text, binary.
var commonBad = []badFrame{
	{frame: `{"data":[{"last":`, reason: "bad_json"},
	{frame: "\x00\x01 garbage, not JSON at all", reason: "bad_json"},
	{frame: "\x00\x01\x02\xff binary", binary: true, reason: "binary_frame"},
}

func malformedExchanges() []*malformedExchange {
	okx := func(sym, price string, ms int64, _ int, extra string) string {
		return fmt.Sprintf(`{"arg":{"channel":"tickers","instId":%q},"data":[{"instType":"SPOT","instId":%q,"last":%q,"askPx":"60001.5","bidPx":"60000.5","open24h":"59000","high24h":"61000","low24h":"58000","volCcy24h":"2222.5","vol24h":"37.25","ts":"%d"%s}]}`, sym, sym, price, ms, extra)
	}
	bybit := func(sym, price string, ms int64, _ int, extra string) string {
		return fmt.Sprintf(`{"topic":"tickers.%s","ts":%d,"type":"snapshot","cs":1,"data":{"symbol":%q,"lastPrice":%q,"highPrice24h":"61000","lowPrice24h":"58000","prevPrice24h":"59000.10","volume24h":"5865.470182","turnover24h":"95949815.680875"%s}}`, sym, ms, sym, price, extra)
	}
	coinbase := func(sym, price string, ms int64, seq int, extra string) string {
		return fmt.Sprintf(`{"channel":"ticker","client_id":"","timestamp":%q,"sequence_num":%d,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":%q,"price":%q,"volume_24_h":"16038.28770938","low_24_h":"58000","high_24_h":"61000","best_bid":"60003.00","best_bid_quantity":"1","best_ask":"60004.00","best_ask_quantity":"2"%s}]}]}`,
			time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), seq, sym, price, extra)
	}
	kraken := func(sym, last string, ms int64, _ int, extra string) string {
		return fmt.Sprintf(`{"channel":"ticker","type":"update","data":[{"symbol":%q,"bid":60004.1,"bid_qty":740.0,"ask":60004.2,"ask_qty":1.5,"last":%s,"volume":997038.98383185,"low":58000,"high":61000,"change":-0.00017,"timestamp":%q%s}]}`,
			sym, last, time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000000Z"), extra)
	}
	bad := func(own ...badFrame) []badFrame { return append(own, commonBad...) }
	return []*malformedExchange{
		{name: "okx", cfg: "okx: {enabled: true, url: %q, symbols: [BTC-USDT], backoff_min: 20ms, backoff_max: 200ms}",
			ack:   `{"event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a"}`,
			valid: func(p string, ms int64, seq int, x string) string { return okx("BTC-USDT", p, ms, seq, x) },
			bad: bad(
				badFrame{frame: `{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","ts":"1767323045000"}]}`, reason: "missing_field"},
				badFrame{frame: okx("BTC-USDT", "", 1767323045000, 0, ""), reason: "bad_field"},
				badFrame{frame: okx("SOL-USDT", "1", 1767323045000, 0, ""), reason: "unknown_stream"},
			)},
		{name: "bybit", cfg: "bybit: {enabled: true, url: %q, symbols: [BTCUSDT], backoff_min: 20ms, backoff_max: 200ms}",
			ack:   `{"success":true,"ret_msg":"subscribe","conn_id":"c","req_id":"sub0","op":"subscribe"}`,
			valid: func(p string, ms int64, seq int, x string) string { return bybit("BTCUSDT", p, ms, seq, x) },
			bad: bad(
				badFrame{frame: `{"topic":"tickers.BTCUSDT","ts":1767323045000,"type":"snapshot","data":{"symbol":"BTCUSDT"}}`, reason: "missing_field"},
				badFrame{frame: bybit("BTCUSDT", "", 1767323045000, 0, ""), reason: "bad_field"},
				badFrame{frame: bybit("SOLUSDT", "1", 1767323045000, 0, ""), reason: "unknown_stream"},
			)},
		{name: "coinbase", cfg: "coinbase: {enabled: true, url: %q, symbols: [BTC-USD], backoff_min: 20ms, backoff_max: 200ms}",
			valid: func(p string, ms int64, seq int, x string) string { return coinbase("BTC-USD", p, ms, seq, x) },
			bad: bad(
				badFrame{frame: `{"channel":"ticker","timestamp":"2023-02-09T20:30:37.167359596Z","sequence_num":2,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":"BTC-USD"}]}]}`, reason: "missing_field"},
				badFrame{frame: coinbase("BTC-USD", "", 1767323045000, 0, ""), reason: "bad_field"},
				badFrame{frame: coinbase("SOL-USD", "1", 1767323045000, 0, ""), reason: "unknown_stream"},
			)},
		{name: "kraken", cfg: "kraken: {enabled: true, url: %q, symbols: [BTC/USD], backoff_min: 20ms, backoff_max: 200ms}",
			ack:   `{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true}`,
			valid: func(p string, ms int64, seq int, x string) string { return kraken("BTC/USD", p, ms, seq, x) },
			bad: bad(
				badFrame{frame: `{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","timestamp":"2026-01-02T03:04:05.000000Z"}]}`, reason: "missing_field"},
				badFrame{frame: kraken("BTC/USD", `""`, 1767323045000, 0, ""), reason: "bad_field"},
				badFrame{frame: kraken("SOL/USD", "1", 1767323045000, 0, ""), reason: "unknown_stream"},
			)},
	}
}

// malformed: OKX, Bybit, Coinbase and Kraken local exchanges at once (the
// sim off), each sending its valid ticker frames next to malformed ones in
// its own format, and at the end a frame over the read limit. Every valid
// frame must be a tick in Kafka and both sinks, nothing more, and every
// malformed frame counted under its exchange and reason. (Binance's
// malformed frames are the storm row's.)
func (s *suite) malformed(t *testing.T) {
	exs := malformedExchanges()
	r := s.rig(t, "")
	r.sim = false
	var cfg []string
	for _, mx := range exs {
		mx.serve(t)
		cfg = append(cfg, "  "+fmt.Sprintf(mx.cfg, mx.srv.URL()))
	}
	r.extra = strings.Join(cfg, "\n")
	r.start(true)
	for _, mx := range exs {
		select {
		case <-mx.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the local exchange did not get through its frames", mx.name)
		}
	}
	counted := map[string]map[string]float64{}
	reconnects := map[string]float64{}
	for _, mx := range exs {
		counted[mx.name] = map[string]float64{}
		testkit.Eventually(t, 15*time.Second, mx.name+": malformed frames counted", func() bool {
			ok := true
			for reason, n := range mx.malformed {
				v := metricSum(t, r.base(), "tickflow_ingest_malformed_frames_total", `exchange="`+mx.name+`"`, `reason="`+reason+`"`)
				counted[mx.name][reason] = v
				ok = ok && v == float64(n)
			}
			return ok
		})
		reconnects[mx.name] = metricSum(t, r.base(), "tickflow_ingest_reconnects_total", `exchange="`+mx.name+`"`)
	}
	totals := map[string]float64{}
	for _, mx := range exs {
		totals[mx.name] = metricSum(t, r.base(), "tickflow_ingest_malformed_frames_total", `exchange="`+mx.name+`"`)
	}
	r.settle()
	var all faultRow
	r.count(&all)
	r.check(all)
	var sent int64
	for _, mx := range exs {
		sent += mx.sent.Load()
	}
	if all.accepted != sent || all.acked != sent || all.kafka != sent {
		t.Errorf("the four exchanges sent %d valid frames; tickflow accepted %d, acked %d; Kafka holds %d", sent, all.accepted, all.acked, all.kafka)
	}
	for _, mx := range exs {
		var reasons []string
		for reason, n := range mx.malformed {
			reasons = append(reasons, fmt.Sprintf("%s %d/%v", reason, n, counted[mx.name][reason]))
		}
		sort.Strings(reasons)
		row := faultRow{fault: "malformed frames: " + mx.name, exchangeSent: mx.sent.Load(), exchangeLost: -1, accepted: -1, acked: -1, unproduced: -1, push: -1,
			note: fmt.Sprintf("%d malformed sent, %v counted (sent/counted: %s); half the valid frames carry unknown fields; 1 frame over the 64 KiB read limit counted too_large, %v reconnects",
				mx.malformedTotal(), totals[mx.name], strings.Join(reasons, ", "), reconnects[mx.name])}
		r.countFor(&row, mx.name)
		row.accepted, row.acked, row.unproduced = -1, -1, -1 // the summaries are the whole run's: checked above
		r.check(row)
		if row.kafka != row.exchangeSent {
			t.Errorf("%s: Kafka holds %d ticks, the exchange sent %d valid frames", mx.name, row.kafka, row.exchangeSent)
		}
		if totals[mx.name] != float64(mx.malformedTotal()) {
			t.Errorf("%s: %d malformed frames sent, %v counted", mx.name, mx.malformedTotal(), totals[mx.name])
		}
		s.add(row)
	}
}
