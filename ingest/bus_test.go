package ingest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/sim"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

var _ ingest.Publisher = (*bus.Producer)(nil)

// recordingQueue remembers every tick the queue accepted.
type recordingQueue struct {
	q        *ingest.Queue
	mu       sync.Mutex
	accepted []tick.Tick
}

func (r *recordingQueue) Enqueue(ctx context.Context, t *tick.Tick) error {
	err := r.q.Enqueue(ctx, t)
	if err == nil {
		r.mu.Lock()
		r.accepted = append(r.accepted, *t)
		r.mu.Unlock()
	}
	return err
}

// Source → queue → pump → the real producer → the embedded broker, stopped
// mid-stream: every tick the queue accepted is in Kafka exactly once, in
// order per pair, byte for byte.
func TestShutdownDeliversEveryAcceptedTickToKafka(t *testing.T) {
	const topic = "market_data.ticks"
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	cc := bus.ClientConfig{Brokers: emb.Addrs()}
	setup, cancelSetup := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelSetup()
	if err := bus.EnsureTopic(setup, cc, topic, 4, -1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	producer, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: topic, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(context.Background())

	q, _ := ingest.NewQueue(64, nil, reg)
	rq := &recordingQueue{q: q}
	src, err := sim.New(sim.Options{Symbols: []string{"BTCUSDT", "ETHUSDT", "XRPUSDT"}, Interval: 3 * time.Millisecond, Seed: 1, Queue: rq, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	pump, err := ingest.NewPump(q, producer, ingest.PumpOptions{Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	feedDone, pumpDone := make(chan error, 1), make(chan error, 1)
	go func() { feedDone <- src.Run(ctx) }()
	go func() { pumpDone <- pump.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rq.mu.Lock()
		n := len(rq.accepted)
		rq.mu.Unlock()
		if n >= 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d ticks after 5s", n)
		}
		time.Sleep(time.Millisecond)
	}
	cancel() // mid-stream
	if err := <-feedDone; err != nil {
		t.Fatalf("source: %v", err)
	}
	if err := <-pumpDone; err != nil {
		t.Fatalf("pump: %v", err)
	}

	rq.mu.Lock()
	want := rq.accepted
	rq.mu.Unlock()
	cl, err := kgo.NewClient(kgo.SeedBrokers(emb.Addrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string][]string{}
	n := 0
	pollCtx, cancelPoll := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelPoll()
	for n < len(want) {
		fs := cl.PollFetches(pollCtx)
		if pollCtx.Err() != nil {
			t.Fatalf("consumed %d of %d accepted ticks", n, len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			var tk tick.Tick
			if err := tick.Unmarshal(r.Value, &tk); err != nil {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			if string(r.Key) != tk.Key() {
				t.Errorf("record key %q for tick %s", r.Key, tk.Key())
			}
			got[tk.Key()] = append(got[tk.Key()], string(r.Value))
			n++
		})
	}
	wantByKey := map[string][]string{}
	for i := range want {
		if in, err := instrument.Resolve(want[i].Exchange, want[i].Symbol); err == nil {
			want[i].Base, want[i].Quote = in.Base, in.Quote // the pump gives every tick its instrument
		}
		wantByKey[want[i].Key()] = append(wantByKey[want[i].Key()], string(want[i].AppendJSON(nil)))
	}
	for k, ws := range wantByKey {
		if len(got[k]) != len(ws) {
			t.Errorf("%s: %d records in Kafka, %d accepted", k, len(got[k]), len(ws))
			continue
		}
		for i := range ws {
			if got[k][i] != ws[i] {
				t.Fatalf("%s record %d:\n got %s\nwant %s", k, i, got[k][i], ws[i])
			}
		}
	}
	if n != len(want) {
		t.Errorf("%d records in Kafka, %d ticks accepted", n, len(want))
	}
}

// A tick the producer buffered but the broker never took (here: its topic
// does not exist) is lost; the pump must not report a clean drain.
func TestPumpReportsTicksTheBrokerRejected(t *testing.T) {
	emb, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	reg := prometheus.NewRegistry()
	producer, err := bus.NewProducer(bus.ClientConfig{Brokers: emb.Addrs()}, bus.ProducerOptions{Topic: "no.such.topic", Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(context.Background())
	q, _ := ingest.NewQueue(8, nil, reg)
	pump, err := ingest.NewPump(q, producer, ingest.PumpOptions{Metrics: reg, DrainTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pump.Run(ctx) }()
	tk := tick.Tick{Exchange: "test", Symbol: "BTCUSDT", Timestamp: 1, Price: tick.MustDecimal("1.5")}
	if err := q.Enqueue(ctx, &tk); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("pump reported a clean drain, but the broker never took the tick")
		}
		t.Logf("pump: %v", err)
	case <-time.After(25 * time.Second):
		t.Fatal("pump did not return")
	}
}

// sum adds up a counter vector's children.
func sum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// refusalRig is a broker, a producer, a queue and a pump, with n ticks of
// three pairs accepted while the broker refuses what refuse says.
type refusalRig struct {
	c        *kfake.Cluster
	reg      *prometheus.Registry
	accepted []tick.Tick
	runErr   error
}

func runRefusals(t *testing.T, n int, drain time.Duration, refuse kfake.Fault) *refusalRig {
	t.Helper()
	const topic = "market_data.ticks"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	h := c.Fault(refuse)
	reg := prometheus.NewRegistry()
	producer, err := bus.NewProducer(bus.ClientConfig{Brokers: c.ListenAddrs()}, bus.ProducerOptions{Topic: topic, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(context.Background())
	q, _ := ingest.NewQueue(n, nil, reg)
	pump, err := ingest.NewPump(q, producer, ingest.PumpOptions{Metrics: reg, DrainTimeout: drain,
		RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pump.Run(ctx) }()
	r := &refusalRig{c: c, reg: reg}
	for i := range n {
		tk := tick.Tick{Exchange: "test", Symbol: []string{"AAA", "BBB", "CCC"}[i%3], Timestamp: int64(1_700_000_000_000 + i), Price: tick.MustDecimal("1.5")}
		if err := q.Enqueue(ctx, &tk); err != nil {
			t.Fatal(err)
		}
		r.accepted = append(r.accepted, tk)
	}
	if refuse.Count > 0 {
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer wcancel()
		if err := h.Wait(wctx, refuse.Count); err != nil {
			t.Fatalf("the broker refused fewer than %d requests: %v", refuse.Count, err)
		}
	}
	cancel()
	r.runErr = <-done
	return r
}

// The broker refuses three produce requests with an error franz-go does
// not retry (UNKNOWN_SERVER_ERROR, what kfake answers when its log write
// fails). The client fails those records; the pump produces them again.
// Every accepted tick is acknowledged and in Kafka exactly once, and the
// counters say so exactly: refused equals what the client failed.
func TestBrokerRefusalIsRetriedAndCountedExactly(t *testing.T) {
	const n = 600
	r := runRefusals(t, n, 10*time.Second, kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.UnknownServerError, Count: 3})
	if r.runErr != nil {
		t.Fatalf("pump: %v", r.runErr)
	}
	failed := sum(t, r.reg, "tickflow_bus_produce_errors_total")
	for name, want := range map[string]float64{
		"tickflow_ingest_ticks_accepted_total":    n,
		"tickflow_ingest_ticks_handed_total":      n,
		"tickflow_ingest_ticks_acked_total":       n,
		"tickflow_ingest_unproduced_total":        0,
		"tickflow_ingest_ticks_refused_total":     failed,
		"tickflow_ingest_ticks_redelivered_total": failed,
	} {
		if got := sum(t, r.reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if failed == 0 {
		t.Error("the client failed no record: the refusal was not exercised")
	}
	got := consumeAll(t, r.c.ListenAddrs(), "market_data.ticks", n)
	seen := map[string]bool{}
	for _, v := range got {
		if seen[v] {
			t.Errorf("duplicate in Kafka: %s", v)
		}
		seen[v] = true
	}
	for i := range r.accepted {
		if !seen[string(r.accepted[i].AppendJSON(nil))] {
			t.Errorf("accepted tick %s@%d not in Kafka", r.accepted[i].Key(), r.accepted[i].Timestamp)
		}
	}
}

// The broker refuses everything, with an error the client retries itself
// (KAFKA_STORAGE_ERROR, what the embedded broker answers on a full disk),
// until the drain deadline: nothing is acknowledged, and unproduced is
// exactly accepted minus acknowledged.
func TestUnproducedIsAcceptedMinusAcknowledged(t *testing.T) {
	const n = 90
	r := runRefusals(t, n, 500*time.Millisecond, kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.KafkaStorageError, Count: -1})
	if !errors.Is(r.runErr, ingest.ErrDrainIncomplete) {
		t.Fatalf("pump = %v, want ErrDrainIncomplete", r.runErr)
	}
	accepted, acked := sum(t, r.reg, "tickflow_ingest_ticks_accepted_total"), sum(t, r.reg, "tickflow_ingest_ticks_acked_total")
	if got := sum(t, r.reg, "tickflow_ingest_unproduced_total"); accepted != n || acked != 0 || got != accepted-acked {
		t.Errorf("accepted %v, acked %v, unproduced %v: want %d, 0, %d", accepted, acked, got, n, n)
	}
}

// consumeAll reads n records from topic and returns their values.
func consumeAll(t *testing.T, addrs []string, topic string, n int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, string(r.Value)) })
	}
	return out
}
