package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/cli"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/tick"
)

// replayTicks are 3 pairs × 20 ticks, event times rising.
func replayTicks() []tick.Tick {
	var out []tick.Tick
	for i := 0; i < 20; i++ {
		for p, sym := range []string{"BTCUSDT", "ETHUSDT", "SOLUSDT"} {
			out = append(out, tick.Tick{Exchange: "binance", Symbol: sym, Timestamp: 1_767_348_000_000 + int64(i*1000+p),
				Price: tick.MustDecimal(fmt.Sprintf("%d.50", 100+i)), Volume: tick.MustDecimal("1.0"),
				Bid: tick.MustDecimal("99.00"), Ask: tick.MustDecimal("101.00"), ReceivedAt: 1_767_348_000_000_000 + int64(i*1000+p)})
		}
	}
	return out
}

// follow collects what a topic holds (keys and ticks) until n arrived.
func follow(t *testing.T, cc bus.ClientConfig, topic string, n int) ([]string, []tick.Tick) {
	t.Helper()
	var (
		mu    sync.Mutex
		keys  []string
		ticks []tick.Tick
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- bus.Follower{Client: cc}.Follow(ctx, topic, 10_000, func(k, v []byte) {
			var tk tick.Tick
			if err := tick.Unmarshal(v, &tk); err != nil {
				t.Errorf("record %q: %v", v, err)
				return
			}
			mu.Lock()
			keys, ticks = append(keys, string(k)), append(ticks, tk)
			mu.Unlock()
		})
	}()
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%d records on %s", n, topic), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ticks) >= n
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return keys, ticks
}

// checkReplayed: every wanted tick, keyed as live, each pair in order.
func checkReplayed(t *testing.T, keys []string, got, want []tick.Tick) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d ticks, want %d", len(got), len(want))
	}
	per := map[string][]tick.Tick{}
	for i := range got {
		if keys[i] != got[i].Key() {
			t.Fatalf("record key %q for a %s tick", keys[i], got[i].Key())
		}
		per[got[i].Key()] = append(per[got[i].Key()], got[i])
	}
	wper := map[string][]tick.Tick{}
	for _, w := range want {
		wper[w.Key()] = append(wper[w.Key()], w)
	}
	for k, ws := range wper {
		for i, w := range ws {
			g := per[k][i]
			if string(g.AppendJSON(nil)) != string(w.AppendJSON(nil)) {
				t.Fatalf("%s tick %d:\n got  %s\n want %s", k, i, g.AppendJSON(nil), w.AppendJSON(nil))
			}
		}
	}
}

func replayConfig(t *testing.T, listen, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("ingest:\n  binance: {enabled: false}\nbus: {listen: %q, partitions: 4}\n%s", listen, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runReplayCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := cli.Main(ctx, append([]string{"replay"}, args...), cli.IO{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }})
	return code, out.String()
}

func TestReplayFromTheLog(t *testing.T) {
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	ctx := context.Background()
	if err := bus.EnsureTopic(ctx, cc, "market_data.ticks", 4, -1); err != nil {
		t.Fatal(err)
	}
	p, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: "market_data.ticks"})
	if err != nil {
		t.Fatal(err)
	}
	all := replayTicks()
	for i := range all {
		if err := p.Produce(ctx, &all[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	path := replayConfig(t, emb.Addrs()[0], "")

	if code, out := runReplayCmd(t, "-config", path, "-topic", "market_data.ticks"); code != 2 || !strings.Contains(out, "-allow-live-topic") {
		t.Fatalf("replay into the live topic: exit %d, output %q; want 2 naming -allow-live-topic", code, out)
	}
	for _, bad := range [][]string{{"-speed", "0"}, {"-from", "yesterday"}, {"-source", "store"}, {"-from", "2026-01-02T00:00:00Z", "-to", "2026-01-01T00:00:00Z"}} {
		if code, out := runReplayCmd(t, append([]string{"-config", path, "-topic", "x"}, bad...)...); code != 2 {
			t.Errorf("replay %v: exit %d (%s), want 2", bad, code, out)
		}
	}

	var want []tick.Tick
	from, to := all[9].Timestamp, all[50].Timestamp
	for _, tk := range all {
		if tk.Symbol != "SOLUSDT" && tk.Timestamp >= from && tk.Timestamp <= to {
			want = append(want, tk)
		}
	}
	code, out := runReplayCmd(t, "-config", path, "-topic", "replay.log", "-speed", "max",
		"-symbol", "btcusdt,ETHUSDT", "-from", fmt.Sprint(from), "-to", time.UnixMilli(to).UTC().Format(time.RFC3339Nano))
	if code != 0 {
		t.Fatalf("replay exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("replay: %d ticks", len(want))) {
		t.Errorf("progress line does not count %d ticks:\n%s", len(want), out)
	}
	keys, got := follow(t, cc, "replay.log", len(want))
	checkReplayed(t, keys, got, want)
}

func TestReplayFromTheStore(t *testing.T) {
	ch := testsvc.StartClickHouse(t)
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cfg := store.DefaultConfig()
	cfg.ClickHouse.URL, cfg.ClickHouse.Database = ch.HTTPURL(), "replay"
	s, err := store.New(sinks.Env{Name: "store"}, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	all := replayTicks()
	if err := s.WriteBatch(ctx, all); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(ctx)
	path := replayConfig(t, emb.Addrs()[0], fmt.Sprintf("sinks:\n  store: {enabled: false, clickhouse: {url: %q, database: replay}}\n", ch.HTTPURL()))
	code, out := runReplayCmd(t, "-config", path, "-topic", "replay.store", "-speed", "1000", "-exchange", "BINANCE")
	if code != 0 {
		t.Fatalf("replay exit %d:\n%s", code, out)
	}
	keys, got := follow(t, bus.ClientConfig{Brokers: emb.Addrs()}, "replay.store", len(all))
	checkReplayed(t, keys, got, all)
}
