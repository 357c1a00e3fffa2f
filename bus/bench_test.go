package bus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// countSink counts ticks and signals when it has seen want of them.
type countSink struct {
	n, want int
	done    chan struct{}
}

func (s *countSink) Connect(context.Context) error { return nil }
func (s *countSink) Close(context.Context) error   { return nil }
func (s *countSink) WriteBatch(_ context.Context, b []tick.Tick) error {
	s.n += len(b)
	if s.n >= s.want && s.done != nil {
		close(s.done)
		s.done = nil
	}
	return nil
}

// BenchmarkProduceConsume measures ticks through the embedded broker over
// TCP: tickflow's producer in, the sink runtime (decode + batch + commit)
// out. BenchmarkRawKfake is the same broker with bare franz-go records, the
// limit tickflow's bus is compared against.
func BenchmarkProduceConsume(b *testing.B) {
	_, cc := startBroker(b, b.TempDir())
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	s := &countSink{want: b.N, done: make(chan struct{})}
	done := s.done
	rt, err := NewRuntime(RuntimeConfig{Client: cc, Topic: topic, Group: "bench", Sink: s, Batch: sinks.BatchPolicy{Size: 1000, MaxWait: 5 * time.Millisecond}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rt.Run(ctx)
	ticks := make([]tick.Tick, 64)
	for i := range ticks {
		ticks[i] = mkTick(i%8, i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Produce(ctx, &ticks[i%len(ticks)]); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ticks/s")
}

func BenchmarkRawKfake(b *testing.B) {
	_, cc := startBroker(b, b.TempDir())
	opts, _ := cc.opts()
	prod, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	cons, err := kgo.NewClient(append(opts, kgo.ConsumerGroup("raw"), kgo.ConsumeTopics(topic))...)
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	tk := mkTick(1, 1)
	val := tk.AppendJSON(nil)
	ctx := context.Background()
	got := make(chan struct{})
	go func() {
		n := 0
		for n < b.N {
			fs := cons.PollFetches(ctx)
			n += fs.NumRecords()
		}
		close(got)
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		prod.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint("k", i%8)), Value: val}, nil)
	}
	<-got
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ticks/s")
}
