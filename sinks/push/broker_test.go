package push

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

const testTopic = "market_data.ticks"

// feedThroughBroker runs the sink under the bus runtime against an
// embedded broker, as tickflow does, and returns a producer for the tick
// topic and a function reporting the group's committed offsets, summed.
func feedThroughBroker(t *testing.T, s *Sink) (*bus.Producer, func() int64) {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs(), ClientID: "push-test"}
	ctx, cancel := context.WithCancel(context.Background())
	if err := bus.EnsureTopic(ctx, cc, testTopic, 4, -1); err != nil {
		t.Fatal(err)
	}
	spec, _ := sinks.Lookup("push")
	rt, err := bus.NewRuntime(bus.RuntimeConfig{
		Client: cc, Topic: testTopic, Group: "tickflow.push", Name: "push", Sink: s, Batch: spec.Batch,
		CommitInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	prod, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: testTopic, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	adminClient, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(adminClient)
	t.Cleanup(func() {
		_ = prod.Close(context.Background())
		adminClient.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runtime: %v", err)
		}
	})
	committed := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := adm.FetchOffsets(ctx, "tickflow.push")
		if err != nil {
			return -1
		}
		var sum int64
		for _, o := range resp.Sorted() {
			if o.Topic == testTopic && o.At > 0 {
				sum += o.At
			}
		}
		return sum
	}
	return prod, committed
}

func produceTicks(t *testing.T, p *bus.Producer, ticks ...tick.Tick) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range ticks {
		if err := p.Produce(ctx, &ticks[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// The whole path: ticks produced to Kafka reach a filtered subscriber in
// per-pair order, a late subscriber gets the snapshot, and a client that
// never reads is conflated, then dropped, without stopping the sink from
// committing. The sink runs on a fake clock so "too far behind" is exact.
func TestFedThroughBroker(t *testing.T) {
	const maxLag = 500 * time.Millisecond
	clk := clock.NewFake(time.Now())
	ts := startSink(t, func(c *Config) {
		// The burst below is ~100 KB per pair filter: under half this bound,
		// so a reading client never conflates, while the stalled client's
		// ~300 KB must.
		c.Limits.QueueBytes = 256 << 10
		c.Limits.MaxLag = maxLag
		c.PingInterval = time.Hour
	}, func(e *sinks.Env, s *Sink) {
		if e != nil {
			e.Clock = clk
		}
		if s != nil {
			s.tcpWriteBuffer = 4096
		}
	})
	prod, committed := feedThroughBroker(t, ts.Sink)

	stalled := dialSmallBuffer(t, ts)
	subscribe(t, stalled, `{"type":"subscribe"}`)
	btc := dial(t, ts, "")
	subscribe(t, btc, `{"type":"subscribe","channels":["tick"],"exchanges":["binance"],"symbols":["BTCUSDT"]}`)

	const rounds = 300
	var sent []tick.Tick
	for i := int64(1); i <= rounds; i++ {
		for _, p := range []struct{ ex, sym string }{{"binance", "BTCUSDT"}, {"binance", "ETHUSDT"}, {"okx", "BTCUSDT"}} {
			sent = append(sent, mkTick(p.ex, p.sym, fmt.Sprint(i), i))
		}
	}
	got := make(chan error, 1)
	go func() { got <- expectTicks(btc, "binance:BTCUSDT", 1, rounds) }()
	produceTicks(t, prod, sent...)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "every offset committed", func() bool { return committed() == int64(len(sent)) })
	// The stalled client's writer is stuck (the reading client has got
	// everything, so a client with a queue is the stalled one), and its
	// queue passed half its bound at least once: it was conflated, and is
	// not yet dropped.
	testkit.Eventually(t, 10*time.Second, "the stalled client's queue to back up", func() bool {
		ts.connMu.Lock()
		defer ts.connMu.Unlock()
		for c := range ts.conns {
			c.mu.Lock()
			backed := len(c.queue) > 0
			c.mu.Unlock()
			if backed {
				return true
			}
		}
		return false
	})
	if n := counter(ts, "tickflow_push_conflated_ticks_total"); n == 0 {
		t.Fatal("the stalled client was not conflated")
	}
	if n := counter(ts, "tickflow_push_disconnects_total", "reason", "slow_consumer"); n != 0 {
		t.Fatal("the stalled client was dropped before max_lag")
	}

	// Past max_lag the next tick finds it too far behind.
	clk.Advance(maxLag + time.Millisecond)
	next := mkTick("binance", "BTCUSDT", "1000", rounds+1)
	go func() { got <- expectTicks(btc, "binance:BTCUSDT", rounds+1, rounds+1) }()
	produceTicks(t, prod, next)
	if err := <-got; err != nil {
		t.Fatalf("the reading client after the stalled one was dropped: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, "the stalled client to be dropped", func() bool {
		return counter(ts, "tickflow_push_disconnects_total", "reason", "slow_consumer") == 1
	})
	ce, last := expectClose(t, stalled)
	if ce.Code != websocket.StatusPolicyViolation || last.Code != codeSlowConsumer {
		t.Errorf("stalled client closed with %d %q after %+v, want 1008 after %s", ce.Code, ce.Reason, last, codeSlowConsumer)
	}
	testkit.Eventually(t, 10*time.Second, "every offset committed", func() bool { return committed() == int64(len(sent)+1) })

	// A late subscriber starts from the latest tick of each pair.
	late := dial(t, ts, "")
	_, snap := subscribe(t, late, `{"type":"subscribe","channels":["tick"],"symbols":["BTCUSDT"]}`)
	var pairs []string
	for _, tk := range snap {
		pairs = append(pairs, fmt.Sprintf("%s@%d", tk.Key(), tk.Timestamp))
	}
	if want := fmt.Sprintf("[binance:BTCUSDT@%d okx:BTCUSDT@%d]", rounds+1, rounds); fmt.Sprint(pairs) != want {
		t.Errorf("snapshot = %v, want %s", pairs, want)
	}
}

// expectTicks reads ticks of one pair with timestamps from..to, in order.
func expectTicks(c *websocket.Conn, pair string, from, to int64) error {
	for i := from; i <= to; i++ {
		f, err := tryRead(c, 20*time.Second)
		if err != nil {
			return err
		}
		if f.Type != "tick" {
			return fmt.Errorf("got %+v, want a tick", f)
		}
		var tk tick.Tick
		if err := tick.Unmarshal(f.Data, &tk); err != nil || tk.Key() != pair || tk.Timestamp != i {
			return fmt.Errorf("tick %d: got %s@%d (%v)", i, tk.Key(), tk.Timestamp, err)
		}
	}
	return nil
}
