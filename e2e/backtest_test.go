package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/backtest"
	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/cli"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/tick"
)

// backtestStrategies exercise every strategy type on three pairs, which a
// 4-partition topic spreads over partitions.
const backtestStrategies = `
    strategies:
      - {name: btc-cross, type: price_cross, exchange: binance, symbol: BTCUSDT, level: "100", quantity: "2", allow_short: true}
      - {name: btc-sma, type: sma_cross, exchange: binance, symbol: BTCUSDT, fast: 3, slow: 8}
      - {name: eth-breakout, type: breakout, exchange: binance, symbol: ETHUSDT, period: 10, allow_short: true}
      - {name: eth-mom, type: momentum, exchange: binance, symbol: ETHUSDT, window: 5s, threshold: "0.01"}
      - {name: sol-sma-bars, type: sma_cross, exchange: binance, symbol: SOLUSDT, fast: 2, slow: 4, bars: 1s}
`

// walkTicks is a seeded random walk over three pairs and a fourth no
// strategy watches, interleaved, with a repeated event time now and then.
func walkTicks(n int, seed int64) []tick.Tick {
	rng := rand.New(rand.NewSource(seed))
	syms := []string{"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"}
	prices := map[string]int{}
	for _, s := range syms {
		prices[s] = 10000
	}
	var out []tick.Tick
	for i := 0; i < n; i++ {
		sym := syms[rng.Intn(len(syms))]
		prices[sym] += rng.Intn(41) - 20
		p := prices[sym]
		at := 1_767_348_000_000 + int64(i/2)*100
		out = append(out, tick.Tick{Exchange: "binance", Symbol: sym, Timestamp: at, ReceivedAt: at*1000 + int64(i),
			Price: tick.MustDecimal(fmt.Sprintf("%d.%02d", p/100, p%100)), Volume: tick.MustDecimal("1.5")})
	}
	return out
}

func runBacktestCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, append([]string{"backtest"}, args...), cli.IO{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
	return code, stderr.String() + stdout.String()
}

func readReport(t *testing.T, path string) (*backtest.Report, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep backtest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	return &rep, b
}

// TestBacktestDecidesAsLive runs the strategies live, in a tickflow
// process whose strategy sink consumes the tick topic of an embedded broker
// and publishes to strategy.signals, and then "tickflow backtest" over the
// same ticks from the broker's log. The signals read back from the topic
// and the backtest's are the same records, byte for byte, in the same
// order for every pair (the topic keeps order per pair; across pairs live
// order depends on how partitions were fetched). The live paper accounts
// the API reports equal the backtest's.
func TestBacktestDecidesAsLive(t *testing.T) {
	dir := t.TempDir()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, topic := range []string{"market_data.ticks", signal.Topic} {
		if err := bus.EnsureTopic(ctx, cc, topic, 4, -1); err != nil {
			t.Fatal(err)
		}
	}
	ticks := walkTicks(4000, 3)
	p, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ticks {
		if err := p.Produce(ctx, &ticks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}

	apiPort := testsvc.FreePort(t)
	cfg := fmt.Sprintf(`
ingest:
  binance: {enabled: false}
bus: {brokers: [%q], partitions: 4}
sinks:
  cache: {enabled: false}
  store: {enabled: false}
  push: {enabled: false}
  risk: {enabled: false}
  strategy:
    enabled: true
    batch: {size: 37, max_wait: 10ms}
%s
api: {listen: "127.0.0.1:%d"}
log: {format: json}
`, emb.Addrs()[0], backtestStrategies, apiPort)
	live := startTickflow(t, mkdir(t, dir, "live"), cfg)

	// Live is done once the strategy group has committed the end of
	// every tick partition: offsets commit only after the batch's signals
	// are acknowledged.
	adm := kadm.NewClient(mustClient(t, cc))
	testkit.Eventually(t, 60*time.Second, "the live strategy sink to commit every tick", func() bool {
		ends, err := adm.ListEndOffsets(ctx, "market_data.ticks")
		if err != nil {
			return false
		}
		committed, err := adm.FetchOffsets(ctx, "tickflow.strategy")
		if err != nil {
			return false
		}
		done := true
		ends.Each(func(o kadm.ListedOffset) {
			c, ok := committed.Lookup("market_data.ticks", o.Partition)
			if o.Offset > 0 && (!ok || c.At < o.Offset) {
				done = false
			}
		})
		return done
	})
	var status struct {
		Data []signal.StrategyStatus
	}
	getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/strategies", apiPort), &status)
	_ = live.stop(t)

	liveSigs := topicRecords(t, ctx, cc, signal.Topic)

	path := filepath.Join(dir, "live", "config.yaml")
	out := filepath.Join(dir, "report.json")
	code, msg := runBacktestCmd(t, "-config", path, "-o", out)
	if code != 0 {
		t.Fatalf("backtest exit %d:\n%s", code, msg)
	}
	watched := 0 // by default only the strategies' pairs are read
	for _, tk := range ticks {
		if tk.Symbol != "XRPUSDT" {
			watched++
		}
	}
	for _, want := range []string{fmt.Sprintf("backtest: %d ticks from log", watched), "btc-cross", "eth-mom", "max drawdown"} {
		if !strings.Contains(msg, want) {
			t.Errorf("summary lacks %q:\n%s", want, msg)
		}
	}
	rep, raw := readReport(t, out)
	if len(rep.Signals) < 30 {
		t.Fatalf("only %d signals: the walk does not exercise the strategies", len(rep.Signals))
	}
	if len(rep.Signals) != len(liveSigs) {
		t.Fatalf("backtest decided %d signals, live published %d", len(rep.Signals), len(liveSigs))
	}
	perKey := func(recs [][]byte) map[string][]string {
		m := map[string][]string{}
		for _, r := range recs {
			var s signal.Signal
			if err := json.Unmarshal(r, &s); err != nil {
				t.Fatal(err)
			}
			m[s.Key()] = append(m[s.Key()], string(r))
		}
		return m
	}
	var bt [][]byte
	for _, s := range rep.Signals {
		bt = append(bt, s)
	}
	lk, bk := perKey(liveSigs), perKey(bt)
	if len(lk) != 3 {
		t.Fatalf("live signals on %d pairs, want 3", len(lk))
	}
	for k, ls := range lk {
		bs := bk[k]
		if len(bs) != len(ls) {
			t.Fatalf("%s: backtest %d signals, live %d", k, len(bs), len(ls))
		}
		for i := range ls {
			if ls[i] != bs[i] {
				t.Fatalf("%s signal %d:\n live     %s\n backtest %s", k, i, ls[i], bs[i])
			}
		}
	}
	for i, s := range rep.Strategies {
		lp := status.Data[i].Paper
		if status.Data[i].Name != s.Name || lp.RealizedPnL != s.RealizedPnL || lp.Fills != s.Fills || lp.Position != s.Position && !(lp.Position == "0" && s.Position == "0") {
			t.Errorf("%s: live paper %+v; backtest realized %s fills %d position %s", s.Name, lp, s.RealizedPnL, s.Fills, s.Position)
		}
	}

	// Run again: the same report, byte for byte.
	// Run again: the same report, byte for byte; the page carries it.
	out2, html := filepath.Join(dir, "report2.json"), filepath.Join(dir, "report.html")
	if code, msg := runBacktestCmd(t, "-config", path, "-o", out2, "-source", "log", "-html", html); code != 0 {
		t.Fatalf("second backtest exit %d:\n%s", code, msg)
	}
	if _, raw2 := readReport(t, out2); !bytes.Equal(raw, raw2) {
		t.Fatal("two backtests over the same ticks wrote different reports")
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if got := backtestPageData(t, page); !reflect.DeepEqual(got, want) {
		t.Fatal("the page's report differs from the JSON report")
	}

	// -strategy picks; bad flags are exit 2.
	out3 := filepath.Join(dir, "report3.json")
	if code, msg := runBacktestCmd(t, "-config", path, "-o", out3, "-strategy", "eth-mom,btc-cross"); code != 0 {
		t.Fatalf("backtest -strategy exit %d:\n%s", code, msg)
	}
	if rep3, _ := readReport(t, out3); len(rep3.Strategies) != 2 || rep3.Strategies[0].Name != "eth-mom" {
		t.Fatalf("-strategy eth-mom,btc-cross ran %d strategies", len(rep3.Strategies))
	}
	for _, bad := range [][]string{{"-strategy", "nope"}, {"-source", "store"}, {"-from", "yesterday"}, {"-step", "1ms"},
		{"-from", "2026-01-02T00:00:00Z", "-to", "2026-01-01T00:00:00Z"}} {
		if code, msg := runBacktestCmd(t, append([]string{"-config", path, "-o", out3}, bad...)...); code != 2 {
			t.Errorf("backtest %v: exit %d (%s), want 2", bad, code, msg)
		}
	}
}

// backtestPageData decodes the report a backtest page embeds.
func backtestPageData(t *testing.T, page []byte) any {
	t.Helper()
	const open = `<script id="report" type="application/json">`
	_, rest, ok := bytes.Cut(page, []byte(open))
	data, _, closed := bytes.Cut(rest, []byte("</script>"))
	if !ok || !closed {
		t.Fatal("page has no report element")
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("page report: %v", err)
	}
	return v
}

func mustClient(t *testing.T, cc bus.ClientConfig) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// topicRecords reads every record a topic holds now, each partition in
// order, partitions one after another.
func topicRecords(t *testing.T, ctx context.Context, cc bus.ClientConfig, topic string) [][]byte {
	t.Helper()
	adm := kadm.NewClient(mustClient(t, cc))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	ends.Each(func(o kadm.ListedOffset) { total += int(o.Offset) })
	var (
		mu   sync.Mutex
		recs [][]byte
	)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- bus.Follower{Client: cc}.Follow(fctx, topic, 1<<30, func(_, v []byte) {
			mu.Lock()
			recs = append(recs, append([]byte(nil), v...))
			mu.Unlock()
		})
	}()
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("%d records of %s", total, topic), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(recs) >= total
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return recs
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// TestBacktestFromTheStore: the same ticks in ClickHouse and in the
// broker's log give the same report, byte for byte, but for its source.
func TestBacktestFromTheStore(t *testing.T) {
	ch := testsvc.StartClickHouse(t)
	dir := t.TempDir()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	ctx := context.Background()
	if err := bus.EnsureTopic(ctx, cc, "market_data.ticks", 4, -1); err != nil {
		t.Fatal(err)
	}
	ticks := walkTicks(3000, 5)
	p, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ticks {
		if err := p.Produce(ctx, &ticks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	scfg := store.DefaultConfig()
	scfg.ClickHouse.URL, scfg.ClickHouse.Database = ch.HTTPURL(), "backtest"
	s, err := store.New(sinks.Env{Name: "store"}, *scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(ctx, ticks); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(ctx)

	path := replayConfig(t, emb.Addrs()[0], fmt.Sprintf("sinks:\n  store: {enabled: false, clickhouse: {url: %q, database: backtest}}\n  strategy:\n%s",
		ch.HTTPURL(), backtestStrategies))
	from, to := ticks[100].Timestamp, ticks[2800].Timestamp
	reports := map[string][]byte{}
	for _, src := range []string{"", "log"} {
		out := filepath.Join(dir, "report-"+src+".json")
		code, msg := runBacktestCmd(t, "-config", path, "-o", out, "-from", fmt.Sprint(from), "-to", fmt.Sprint(to), "-step", "10s", "-source", src)
		if code != 0 {
			t.Fatalf("backtest -source %q exit %d:\n%s", src, code, msg)
		}
		rep, raw := readReport(t, out)
		if want := map[string]string{"": "store", "log": "log"}[src]; rep.Source != want {
			t.Fatalf("-source %q read from %q, want %q", src, rep.Source, want)
		}
		if rep.First < from || rep.Last > to || len(rep.Signals) < 20 {
			t.Fatalf("-source %q: range %d..%d, %d signals", src, rep.First, rep.Last, len(rep.Signals))
		}
		reports[src] = bytes.Replace(raw, []byte(`"source":"`+rep.Source+`"`), nil, 1)
	}
	if !bytes.Equal(reports[""], reports["log"]) {
		t.Fatal("the store and the log give different reports over the same ticks")
	}
}
