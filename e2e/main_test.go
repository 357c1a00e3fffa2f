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
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/cli"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
	"github.com/tickflow/tickflow/topics"
)

// The test binary doubles as tickflow: with TICKFLOW_TEST_MAIN=1 it does
// what the binary's main does, so shutdown is tested on a real process
// receiving a real SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("TICKFLOW_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main(ctx, os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd    *exec.Cmd
	logs   chan map[string]any
	raw    *bytes.Buffer // written until exited is closed
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// stop sends SIGTERM and returns the exit status once the process is gone.
func (p *proc) stop(t testing.TB) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return p.wait()
}

// wait returns the exit status once the process is gone, discarding logs
// nobody waited for.
func (p *proc) wait() error {
	for range p.logs {
	}
	<-p.exited
	return p.err
}

// startTickflow runs tickflow with the given config text in dir and
// streams its JSON log lines.
func startTickflow(t testing.TB, dir, cfg string, env ...string) *proc {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-config", path)
	cmd.Env = append(os.Environ(), append(env, "TICKFLOW_TEST_MAIN=1")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: make(chan map[string]any, 10000), raw: &bytes.Buffer{}, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.raw.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.logs <- m
			}
		}
		close(p.logs)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // already gone unless the test failed early
		_ = p.wait()
		if t.Failed() {
			t.Logf("tickflow output:\n%s", p.raw.String())
		}
	})
	return p
}

// waitLog returns the first log line satisfying match.
func (p *proc) waitLog(t testing.TB, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-p.logs:
			if !ok {
				t.Fatalf("tickflow exited before logging %s", what)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func msgIs(msg string, kv ...string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["msg"] != msg {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

func demoConfig(dir string, busPort, apiPort, pushPort int) string {
	return fmt.Sprintf(`
ingest:
  binance: {enabled: false}
  sim: {enabled: true, symbols: [BTCUSDT, ETHUSDT, SOLUSDT], interval: 5ms, seed: 42}
bus:
  listen: 127.0.0.1:%d
  data_dir: %s
  partitions: 4
  instance_id: demo
sinks:
  cache: {enabled: true}
  push: {enabled: true, listen: "127.0.0.1:%d"}
api:
  listen: 127.0.0.1:%d
log: {format: json}
`, busPort, filepath.Join(dir, "kafka"), pushPort, apiPort)
}

// TestSIGTERMLosesNothingAccepted runs tickflow on the simulated exchange,
// sends SIGTERM while ticks flow, and checks: exit code 0; every tick the
// sources accepted is in Kafka; every sink group committed no further than
// the log end; and a restart on the same data dir resumes each group from
// its commit until it has everything.
func TestSIGTERMLosesNothingAccepted(t *testing.T) {
	dir := t.TempDir()
	busPort, apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	cfg := demoConfig(dir, busPort, apiPort, pushPort)
	p := startTickflow(t, dir, cfg)
	p.waitLog(t, "api start", msgIs("started", "component", "api"))

	// Wait until ticks have gone all the way through the cache sink and
	// both sink groups have committed, then stop while ticks still flow.
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/tick/sim/BTCUSDT", apiPort), http.StatusOK)
	live := admin(t, fmt.Sprintf("127.0.0.1:%d", busPort))
	waitCommitted(t, live, func(group string, committed, end int64) bool { return committed > 0 })

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	summary := p.waitLog(t, "ingest summary", msgIs("ingest summary"))
	if err := p.wait(); err != nil {
		t.Fatalf("tickflow exit: %v (want exit code 0)", err)
	}
	received := int64(summary["received"].(float64))
	if received == 0 || summary["unproduced"].(float64) != 0 || summary["accepted"] != summary["acked"] {
		t.Fatalf("summary %v: want received > 0, unproduced 0 and accepted == acked", summary)
	}

	// Reopen the broker's data dir and compare.
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka")})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total != received {
		t.Fatalf("Kafka holds %d ticks, the sources accepted %d", total, received)
	}
	for _, group := range sinkGroups {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		committed.Each(func(o kadm.OffsetResponse) {
			if end, ok := ends.Lookup(o.Topic, o.Partition); ok && o.At > end.Offset {
				t.Errorf("%s committed %d past the end %d of partition %d", group, o.At, end.Offset, o.Partition)
			}
		})
	}
	emb.Close()

	// Restart without sources: the sinks catch up on whatever they had not
	// committed, so every group ends at the log end.
	cfg = strings.Replace(cfg, "sim: {enabled: true", "sim: {enabled: false", 1)
	p2 := startTickflow(t, dir, cfg)
	p2.waitLog(t, "api start", msgIs("started", "component", "api"))
	// Every group catches up to the log end (seen live on the broker).
	live = admin(t, fmt.Sprintf("127.0.0.1:%d", busPort))
	waitCommitted(t, live, func(group string, committed, end int64) bool { return committed == end && end == total })
	if err := p2.stop(t); err != nil {
		t.Fatalf("second run exit: %v", err)
	}
	emb2, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka")})
	if err != nil {
		t.Fatal(err)
	}
	defer emb2.Close()
	cl2, err := kgo.NewClient(kgo.SeedBrokers(emb2.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	adm2 := kadm.NewClient(cl2)
	for _, group := range sinkGroups {
		committed, err := adm2.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
		if sum != total {
			t.Errorf("after restart %s committed %d of %d ticks", group, sum, total)
		}
	}
}

// Both sinks of demoConfig consume every tick on every instance, so their
// groups are the instance's own.
var sinkGroups = []string{"tickflow.cache.demo", "tickflow.push.demo"}

func admin(t testing.TB, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// waitCommitted polls the broker until ok holds for every sink group's
// committed offsets and the topic's end offsets (summed over partitions).
func waitCommitted(t *testing.T, adm *kadm.Client, ok func(group string, committed, end int64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
		var end int64
		ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
		all := err == nil
		var last string
		for _, g := range sinkGroups {
			committed, err := adm.FetchOffsets(ctx, g)
			var sum int64
			committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
			if err != nil || !ok(g, sum, end) {
				all = false
				last = fmt.Sprintf("%s committed %d of %d (err %v)", g, sum, end, err)
			}
		}
		cancel()
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets never reached the expected state: %s", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHTTP polls url until it answers with status (a real condition, with
// a deadline).
func waitHTTP(t *testing.T, url string, status int) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no %d within 30s (last err %v)", url, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBadConfigExitsBeforeStarting(t *testing.T) {
	for _, tc := range []struct{ name, cfg, want string }{
		{"unknown key", "bus: {topicz: x}", "field topicz not found"},
		{"unknown sink", "sinks: {cach: {enabled: true}}", "sinks.cach: unknown sink"},
		{"empty symbols", "ingest: {binance: {enabled: true, symbols: []}}", "ingest.binance.symbols"},
		{"bad duration", "sinks: {cache: {enabled: true, batch: {max_wait: fast}}}", "sinks.cache: batch.max_wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "c.yaml")
			os.WriteFile(path, []byte(tc.cfg), 0o644)
			var stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{"-config", path}, cli.IO{Stdout: &stderr, Stderr: &stderr, Getenv: func(string) string { return "" }})
			if code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
				t.Fatal("something started: data dir created")
			}
		})
	}
	var stderr bytes.Buffer
	if code := cli.Main(context.Background(), []string{"-config", "/nonexistent.yaml"}, cli.IO{Stdout: &stderr, Stderr: &stderr, Getenv: os.Getenv}); code != 2 {
		t.Fatalf("missing file: exit %d", code)
	}
}

// TestExternalBrokers: with bus.brokers set (here through the environment)
// no embedded broker starts and ticks go to the configured cluster.
func TestExternalBrokers(t *testing.T) {
	ext, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	dir := t.TempDir()
	busPort, apiPort, pushPort := testsvc.FreePort(t), testsvc.FreePort(t), testsvc.FreePort(t)
	p := startTickflow(t, dir, demoConfig(dir, busPort, apiPort, pushPort), "TICKFLOW_BUS_BROKERS="+strings.Join(ext.Addrs(), ","))
	p.waitLog(t, "external broker", msgIs("using external Kafka", "component", "broker"))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/tick/sim/ETHUSDT", apiPort), http.StatusOK)
	cl, err := kgo.NewClient(kgo.SeedBrokers(ext.Addrs()...), kgo.ConsumeTopics("market_data.ticks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if fs := cl.PollRecords(ctx, 1); fs.NumRecords() == 0 {
		t.Fatalf("no ticks in the external broker: %v", fs.Err())
	}
	if _, err := os.Stat(filepath.Join(dir, "kafka")); err == nil {
		t.Fatal("embedded broker data dir created although brokers are configured")
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

// The configs we ship must load with every sink compiled in and enabled.
func TestShippedConfigsLoad(t *testing.T) {
	for _, f := range []string{"../config.yaml", "../config.demo.yaml"} {
		t.Run(f, func(t *testing.T) {
			cfg, err := config.Load(f, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range sinks.Names() {
				s, ok := cfg.Sink(name)
				if !ok || !s.Enabled || !s.Available {
					t.Errorf("sink %s: %+v (want enabled and compiled in)", name, s)
				}
			}
		})
	}
}

// A component that cannot start stops tickflow with exit code 1 and an
// error naming the component and the cause; what had started is shut down.
func TestStartFailureNamesComponent(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := demoConfig(dir, testsvc.FreePort(t), taken.Addr().(*net.TCPAddr).Port, testsvc.FreePort(t))
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := cli.Main(context.Background(), []string{"-config", path}, cli.IO{Stdout: &stderr, Stderr: &stderr, Getenv: func(string) string { return "" }})
	if code != 1 || !strings.Contains(stderr.String(), "api: listen") || !strings.Contains(stderr.String(), "address already in use") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "broker closed") {
		t.Fatalf("the embedded broker was not closed:\n%s", stderr.String())
	}
}

// The three-process layout under deploy/ loads, and between them the roles
// run every source and sink once: ingest only ingests, the workers run the
// sinks that write the shared stores, the front runs the API and push and
// reads the stores. None starts an embedded broker or an in-process cache.
func TestDeployConfigsLoad(t *testing.T) {
	roles := map[string]struct {
		sources bool
		sinks   []string
	}{
		"../deploy/ingest.yaml":  {true, nil},
		"../deploy/workers.yaml": {false, []string{"cache", "store", "strategy", "risk"}},
		"../deploy/front.yaml":   {false, []string{"push"}},
	}
	seen := map[string]int{}
	for f, want := range roles {
		t.Run(f, func(t *testing.T) {
			cfg, err := config.Load(f, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Bus.Brokers) == 0 {
				t.Error("no bus.brokers: this role would start an embedded broker")
			}
			sources := false
			for _, s := range cfg.Ingest.Sources {
				sources = sources || s.Enabled
			}
			if sources != want.sources {
				t.Errorf("sources enabled %v, want %v", sources, want.sources)
			}
			var got []string
			for _, s := range cfg.Sinks {
				if s.Enabled {
					got = append(got, s.Name)
					seen[s.Name]++
				}
				if s.Name == "cache" && len(s.Settings.(*cache.Config).Redis.Addrs) == 0 {
					t.Error("the cache has no redis.addrs: an in-process cache in a multi-process layout")
				}
			}
			if strings.Join(got, ",") != strings.Join(want.sinks, ",") {
				t.Errorf("sinks enabled %v, want %v", got, want.sinks)
			}
		})
	}
	for _, name := range sinks.Names() {
		if seen[name] != 1 {
			t.Errorf("sink %s is enabled in %d roles, want 1", name, seen[name])
		}
	}
}

// A process whose file raises bus.partitions grows the existing tick topic
// (and only it); one that relies on the default leaves the topic alone.
func TestRaisedPartitionsGrowTheTickTopic(t *testing.T) {
	ext, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	cc := bus.ClientConfig{Brokers: ext.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range append([]string{topics.Ticks}, topics.Side()...) {
		if err := bus.EnsureTopic(ctx, cc, name, 4, -1); err != nil {
			t.Fatal(err)
		}
	}
	counts := func() string {
		t.Helper()
		adm := admin(t, ext.Addrs()[0]) // a fresh client: metadata is cached for seconds
		d, err := adm.ListTopics(ctx, append([]string{"market_data.ticks"}, topics.Side()...)...)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d %d %d", len(d["market_data.ticks"].Partitions), len(d[topics.Side()[0]].Partitions), len(d[topics.Side()[1]].Partitions))
	}
	for _, tc := range []struct{ bus, want string }{
		{fmt.Sprintf("{brokers: [%q]}", ext.Addrs()[0]), "4 4 4"},
		{fmt.Sprintf("{brokers: [%q], partitions: 8}", ext.Addrs()[0]), "8 4 4"},
	} {
		dir := t.TempDir()
		p := startTickflow(t, dir, fmt.Sprintf("ingest: {binance: {enabled: false}}\nbus: %s\napi: {listen: \"127.0.0.1:%d\"}\nlog: {format: json}\n", tc.bus, testsvc.FreePort(t)))
		p.waitLog(t, "api start", msgIs("started", "component", "api"))
		if got := counts(); got != tc.want {
			t.Errorf("bus %s: partitions (ticks, alerts, signals) %s, want %s", tc.bus, got, tc.want)
		}
		if err := p.stop(t); err != nil {
			t.Fatalf("exit: %v", err)
		}
	}
}
