package ingest_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/sim"
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
	pump, err := ingest.NewPump(q, producer, ingest.PumpOptions{Metrics: reg, DrainTimeout: 30 * time.Second})
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
