package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// scalePairs are the simulated pairs of the scale-out tests.
var scalePairs = []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"}

const scalePartitions = 6

// TestScaleOut runs tickflow as the README's "Running on several machines"
// lays it out, each role its own process against one broker: a broker-only
// process (the embedded broker; against external Kafka it is not needed),
// an ingest process, two sink workers (store on ClickHouse, cache on a Redis
// Cluster), two API + push processes and a risk-only process. It checks:
//
//   - the workers split the store and cache partitions between them; each
//     push instance and the risk process consume every partition;
//   - every WebSocket client on both push instances gets every tick of its
//     filter, in order;
//   - SIGKILL of a worker mid-stream moves its partitions to the other one
//     within the session timeout; restarted, it rejoins and the work splits
//     again (both read from the groups as the broker describes them);
//   - while the risk-only process restarts, the other groups keep
//     committing past where it stopped;
//   - in the end every tick the ingest process accepted is in ClickHouse
//     exactly once as queried (FINAL) and in each pair's Redis history,
//     counted with the test's own clients, not tickflow's readers.
func TestScaleOut(t *testing.T) {
	started := time.Now()
	cluster := testsvc.StartRedisCluster(t, 3)
	ch := testsvc.StartClickHouse(t)
	dir := t.TempDir()
	busPort := testsvc.FreePort(t)
	broker := fmt.Sprintf("127.0.0.1:%d", busPort)
	redisAddrs := strings.Join(quoteAll(cluster.Addrs()), ", ")

	b := startTickflow(t, mkdir(t, dir, "broker"), fmt.Sprintf(`
ingest: {binance: {enabled: false}}
bus: {listen: %q, data_dir: %q, partitions: %d, instance_id: broker}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, broker, filepath.Join(dir, "broker", "kafka"), scalePartitions, testsvc.FreePort(t)))
	b.waitLog(t, "the broker", msgIs("started", "component", "api"))

	// Every process but the broker's points at it, with a short session
	// timeout (the broker's minimum) so a killed worker is noticed soon.
	// Each names itself as instance and Kafka client, so the groups'
	// descriptions say which process owns what.
	common := fmt.Sprintf(`bus: {brokers: [%q], partitions: %d, session_timeout: 6s, rebalance_timeout: 10s, instance_id: %%[1]s, client_id: %%[1]s}
api: {listen: "127.0.0.1:%%[2]d"}
log: {format: json}
`, broker, scalePartitions)
	backends := fmt.Sprintf(`  cache: {enabled: %%v, history: 100000, redis: {addrs: [%s]}}
  store: {enabled: %%v, batch: {size: 500, max_wait: 200ms}, clickhouse: {url: %q, database: scale}}
`, redisAddrs, ch.HTTPURL())
	worker := func(id string) string {
		return fmt.Sprintf("ingest: {binance: {enabled: false}}\nsinks:\n"+fmt.Sprintf(backends, true, true)+common, id, testsvc.FreePort(t))
	}
	w1dir, w2dir := mkdir(t, dir, "w1"), mkdir(t, dir, "w2")
	w1cfg := worker("w1")
	w1 := startTickflow(t, w1dir, w1cfg)
	w2 := startTickflow(t, w2dir, worker("w2"))

	pushPorts := []int{testsvc.FreePort(t), testsvc.FreePort(t)}
	var fronts []*proc
	for i, port := range pushPorts {
		id := fmt.Sprintf("a%d", i+1)
		fronts = append(fronts, startTickflow(t, mkdir(t, dir, id), fmt.Sprintf("ingest: {binance: {enabled: false}}\nsinks:\n"+
			fmt.Sprintf(backends, false, false)+fmt.Sprintf("  push: {enabled: true, listen: \"127.0.0.1:%d\"}\n", port)+common,
			id, testsvc.FreePort(t))))
	}
	rdir := mkdir(t, dir, "risk")
	riskCfg := fmt.Sprintf(`ingest: {binance: {enabled: false}}
sinks:
  risk: {enabled: true, state_dir: %q}
`, filepath.Join(rdir, "state")) + fmt.Sprintf(common, "risk", testsvc.FreePort(t))
	risk := startTickflow(t, rdir, riskCfg)

	adm := admin(t, broker)
	storeG, cacheG, riskG := "tickflow.store", "tickflow.cache", "tickflow.risk"
	pushG := []string{"tickflow.push.a1", "tickflow.push.a2"}
	split := func(m map[string]int) bool { return len(m) == 2 && m["w1"] == 3 && m["w2"] == 3 }
	waitAssigned(t, adm, storeG, "w1 and w2 splitting the store's partitions 3/3", split)
	waitAssigned(t, adm, cacheG, "w1 and w2 splitting the cache's partitions 3/3", split)
	for i, g := range pushG {
		id := fmt.Sprintf("a%d", i+1)
		waitAssigned(t, adm, g, id+" owning every push partition", func(m map[string]int) bool { return len(m) == 1 && m[id] == scalePartitions })
	}
	waitAssigned(t, adm, riskG, "the risk process owning every partition", func(m map[string]int) bool { return len(m) == 1 && m["risk"] == scalePartitions })

	// Browsers on both push instances subscribe before any tick exists,
	// so each must receive every tick of its filter.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	filters := [][]string{{"BTCUSDT", "ETHUSDT"}, {"SOLUSDT"}, scalePairs}
	var clients []*pushClient
	for _, port := range pushPorts {
		for _, f := range filters {
			clients = append(clients, dialPush(ctx, t, port, f))
		}
	}

	// Ingest starts; ticks flow.
	in := startTickflow(t, mkdir(t, dir, "ingest"), fmt.Sprintf("ingest:\n  binance: {enabled: false}\n  sim: {enabled: true, symbols: [%s], interval: 20ms, seed: 3}\n",
		strings.Join(scalePairs, ", "))+fmt.Sprintf(common, "ingest", testsvc.FreePort(t)))
	waitProgress(t, adm, storeG, 300)

	// SIGKILL one worker mid-stream: the survivor owns everything within
	// the session timeout (plus a rebalance).
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = w1.wait()
	alone := func(m map[string]int) bool { return len(m) == 1 && m["w2"] == scalePartitions }
	waitAssigned(t, adm, storeG, "w2 owning every store partition", alone)
	waitAssigned(t, adm, cacheG, "w2 owning every cache partition", alone)
	failover := time.Since(killed)
	t.Logf("partitions moved to the survivor %.1fs after SIGKILL (session timeout 6s)", failover.Seconds())
	if failover > 6*time.Second+15*time.Second {
		t.Errorf("failover took %s, want within the 6s session timeout plus a rebalance", failover)
	}
	waitProgress(t, adm, storeG, 300) // the survivor writes what the dead one owned

	// Restarted, it rejoins and the work splits again.
	w1 = startTickflow(t, w1dir, w1cfg)
	waitAssigned(t, adm, storeG, "w1 back, the store's partitions split 3/3 again", split)
	waitAssigned(t, adm, cacheG, "w1 back, the cache's partitions split 3/3 again", split)

	// The risk-only process restarts; meanwhile the other groups keep
	// committing past where it stopped, and its own commit stays put.
	if err := risk.stop(t); err != nil {
		t.Fatalf("risk exit: %v", err)
	}
	riskAt := committed(t, adm, riskG)
	endAt := endOffsets(t, adm)
	others := append([]string{storeG, cacheG}, pushG...)
	testkit.Eventually(t, 60*time.Second, "the other groups committing 300 ticks past the end seen when risk stopped", func() bool {
		for _, g := range others {
			if committed(t, adm, g) < endAt+300 {
				return false
			}
		}
		return true
	})
	if got := committed(t, adm, riskG); got != riskAt {
		t.Fatalf("risk's group committed %d → %d while its only process was down", riskAt, got)
	}
	risk = startTickflow(t, rdir, riskCfg)
	waitAssigned(t, adm, riskG, "the restarted risk process owning every partition", func(m map[string]int) bool { return len(m) == 1 && m["risk"] == scalePartitions })

	// Ingest stops; everything it accepted is in Kafka, and every group
	// catches up to the end.
	if err := in.stop(t); err != nil {
		t.Fatalf("ingest exit: %v", err)
	}
	total := endOffsets(t, adm)
	testkit.Eventually(t, 60*time.Second, "every group committed up to the log end", func() bool {
		for _, g := range append(others, riskG) {
			if committed(t, adm, g) != total {
				return false
			}
		}
		return true
	})
	log := readLog(ctx, t, broker, total)

	// ClickHouse holds every tick exactly once as queried, whatever copies
	// the killed worker's replay left before merges collapse them.
	t.Logf("ClickHouse rows before FINAL: %d (log %d)", chCount(t, ch.HTTPURL(), "SELECT count() FROM scale.market_ticks"), total)
	if got := chCount(t, ch.HTTPURL(), "SELECT count() FROM scale.market_ticks FINAL"); got != total {
		t.Errorf("ClickHouse (FINAL) holds %d ticks, the log %d", got, total)
	}
	if got := chCount(t, ch.HTTPURL(), "SELECT uniqExact(exchange, symbol, timestamp, received_at) FROM scale.market_ticks"); got != total {
		t.Errorf("ClickHouse holds %d distinct ticks, the log %d", got, total)
	}
	// Each pair's Redis history holds every one of its ticks.
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cluster.Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	for _, p := range scalePairs {
		n, err := rc.Do(ctx, rc.B().Zcard().Key("market_data:tick_history:sim:"+p).Build()).AsInt64()
		if err != nil || n != int64(len(log[p])) {
			t.Errorf("Redis history of sim:%s: %d ticks (err %v), the log %d", p, n, err, len(log[p]))
		}
	}
	// Every browser got every tick of its filter, in order.
	for _, c := range clients {
		c.waitAll(t, log)
	}
	for _, p := range append(fronts, w1, w2, risk, b) {
		if err := p.stop(t); err != nil {
			t.Errorf("exit: %v", err)
		}
	}
	t.Logf("%d ticks; wall time %.1fs", total, time.Since(started).Seconds())
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// groupAssignment is, per member client ID (the test gives each process
// its own bus.client_id), how many partitions it owns in a stable group.
func groupAssignment(adm *kadm.Client, group string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, err
	}
	d := ds[group]
	if d.Err != nil {
		return nil, d.Err
	}
	if d.State != "Stable" {
		return nil, fmt.Errorf("group %s is %s", group, d.State)
	}
	out := map[string]int{}
	for _, m := range d.Members {
		n := 0
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				n += len(tp.Partitions)
			}
		}
		out[m.ClientID] += n
	}
	return out, nil
}

func waitAssigned(t testing.TB, adm *kadm.Client, group, what string, ok func(map[string]int) bool) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, what, func() bool {
		m, err := groupAssignment(adm, group)
		return err == nil && ok(m)
	})
}

// committed is group's committed offset summed over partitions.
func committed(t *testing.T, adm *kadm.Client, group string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return -1
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	return sum
}

// endOffsets is the tick topic's end offset summed over partitions.
func endOffsets(t *testing.T, adm *kadm.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum
}

// waitProgress waits until group has committed n more ticks than now.
func waitProgress(t *testing.T, adm *kadm.Client, group string, n int64) {
	t.Helper()
	from := max(committed(t, adm, group), 0)
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("%s committing %d more ticks", group, n), func() bool {
		return committed(t, adm, group) >= from+n
	})
}

// readLog reads the whole tick topic with a plain client and returns each
// symbol's event times in log order.
func readLog(ctx context.Context, t *testing.T, broker string, total int64) map[string][]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics("market_data.ticks"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := map[string][]int64{}
	var n int64
	for n < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d ticks from the log: %v", n, total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var tk tick.Tick
			if err := tick.Unmarshal(r.Value, &tk); err != nil {
				t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			out[tk.Symbol] = append(out[tk.Symbol], tk.Timestamp)
			n++
		})
	}
	return out
}

// chCount runs a one-number query over ClickHouse's HTTP interface.
func chCount(t *testing.T, base, q string) int64 {
	t.Helper()
	resp, err := http.Post(base+"/?query="+url.QueryEscape(q), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", q, resp.Status, b)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", q, b)
	}
	return n
}

// pushClient is a browser on a push feed, recording each symbol's ticks.
type pushClient struct {
	port    int
	symbols []string
	mu      sync.Mutex
	got     map[string][]int64
	err     error
	frames  chan struct{}
}

func dialPush(ctx context.Context, t *testing.T, port int, symbols []string) *pushClient {
	t.Helper()
	var ws *websocket.Conn
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("push listener on :%d", port), func() bool {
		var err error
		ws, _, err = websocket.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/ws", port), nil)
		return err == nil
	})
	t.Cleanup(func() { ws.CloseNow() })
	ws.SetReadLimit(1 << 20)
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "channels": []string{"tick"}, "exchanges": []string{"sim"}, "symbols": symbols})
	if err := ws.Write(ctx, websocket.MessageText, sub); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil || !strings.Contains(string(b), `"subscribed"`) {
		t.Fatalf("subscribe on :%d: %s %v", port, b, err)
	}
	c := &pushClient{port: port, symbols: symbols, got: map[string][]int64{}, frames: make(chan struct{}, 1)}
	go func() {
		for {
			_, b, err := ws.Read(ctx)
			var f struct {
				Type string
				Data struct {
					Symbol    string
					Timestamp int64
				}
			}
			if err == nil {
				err = json.Unmarshal(b, &f)
			}
			if err == nil && f.Type != "tick" {
				err = fmt.Errorf("unexpected frame %s", b)
			}
			c.mu.Lock()
			if err != nil {
				c.err = err
			} else {
				c.got[f.Data.Symbol] = append(c.got[f.Data.Symbol], f.Data.Timestamp)
			}
			c.mu.Unlock()
			select {
			case c.frames <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// waitAll waits until the client has every tick of its filter the log
// holds, and checks they are those ticks in log order.
func (c *pushClient) waitAll(t *testing.T, log map[string][]int64) {
	t.Helper()
	want := 0
	for _, s := range c.symbols {
		want += len(log[s])
	}
	count := func() (int, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		for _, ts := range c.got {
			n += len(ts)
		}
		return n, c.err
	}
	deadline := time.After(60 * time.Second)
	for {
		n, err := count()
		if err != nil {
			t.Fatalf("push :%d %v: %v after %d of %d ticks", c.port, c.symbols, err, n, want)
		}
		if n >= want {
			break
		}
		select {
		case <-c.frames:
		case <-deadline:
			t.Fatalf("push :%d %v: %d of %d ticks", c.port, c.symbols, n, want)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.symbols {
		if fmt.Sprint(c.got[s]) != fmt.Sprint(log[s]) {
			t.Errorf("push :%d %s: got %d ticks, the log %d, or not in log order", c.port, s, len(c.got[s]), len(log[s]))
		}
	}
	for s := range c.got {
		if !strings.Contains(strings.Join(c.symbols, ","), s) {
			t.Errorf("push :%d %v: got %s, outside its filter", c.port, c.symbols, s)
		}
	}
}

// TestInProcessCacheOnEveryInstance is issue 10's report turned into a
// test: one process hosts the broker and the simulator, two more point at
// it with the in-process cache and push on. Each instance consumes every
// tick in a group of its own, so a browser on either gets every pair and
// each API lists every pair from its own memory, with current prices.
func TestInProcessCacheOnEveryInstance(t *testing.T) {
	dir := t.TempDir()
	busPort := testsvc.FreePort(t)
	broker := fmt.Sprintf("127.0.0.1:%d", busPort)
	p0 := startTickflow(t, mkdir(t, dir, "p0"), fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  sim: {enabled: true, symbols: [%s], interval: 20ms, seed: 5}
bus: {listen: %q, data_dir: %q, partitions: %d}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, strings.Join(scalePairs, ", "), broker, filepath.Join(dir, "p0", "kafka"), scalePartitions, testsvc.FreePort(t)))
	p0.waitLog(t, "the broker", msgIs("started", "component", "api"))

	adm := admin(t, broker)
	var procs []*proc
	for _, id := range []string{"m1", "m2"} {
		apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t)
		p := startTickflow(t, mkdir(t, dir, id), fmt.Sprintf(`
ingest: {binance: {enabled: false}}
bus: {brokers: [%q], instance_id: %s, client_id: %s}
sinks:
  cache: {enabled: true}
  push: {enabled: true, listen: "127.0.0.1:%d"}
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, broker, id, id, pushPort, apiPort))
		procs = append(procs, p)
		for _, g := range []string{"tickflow.cache." + id, "tickflow.push." + id} {
			waitAssigned(t, adm, g, id+" owning every partition of "+g, func(m map[string]int) bool { return len(m) == 1 && m[id] == scalePartitions })
		}
		// Every pair reaches this instance's browser...
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c := dialPush(ctx, t, pushPort, scalePairs)
		testkit.Eventually(t, 60*time.Second, id+"'s browser receiving ticks of every pair", func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.got) == len(scalePairs) && c.err == nil
		})
		cancel()
		// ...and this instance's API lists every pair from its own memory.
		testkit.Eventually(t, 30*time.Second, id+"'s /api/v1/symbols listing every pair", func() bool {
			var page struct{ Data []struct{ Symbol string } }
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/symbols", apiPort))
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			return json.NewDecoder(resp.Body).Decode(&page) == nil && len(page.Data) == len(scalePairs)
		})
	}
	for _, p := range append(procs, p0) {
		if err := p.stop(t); err != nil {
			t.Errorf("exit: %v", err)
		}
	}
}
