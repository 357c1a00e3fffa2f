package ingest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tickflow/tickflow/tick"
)

// countingPublisher accepts everything at once: the benchmark measures the
// queue and pump, not a producer.
type countingPublisher struct{ n atomic.Int64 }

func (p *countingPublisher) Produce(context.Context, *tick.Tick) error {
	p.n.Add(1)
	return nil
}

// BenchmarkQueueToPublisher is one tick from a source's Enqueue to the
// publisher's Produce (8 pairs, default 8 workers, queue of 4096). The raw
// baseline is a bare buffered channel of ticks with one reader.
func BenchmarkQueueToPublisher(b *testing.B) {
	ticks := make([]tick.Tick, 8)
	for i := range ticks {
		ticks[i] = mkTick(fmt.Sprintf("PAIR%d", i), i)
	}
	b.Run("queue_pump", func(b *testing.B) {
		q, _ := NewQueue(4096, nil, nil)
		pub := &countingPublisher{}
		p, _ := NewPump(q, pub, PumpOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := q.Enqueue(ctx, &ticks[i&7]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if got := pub.n.Load(); got != int64(i) {
			b.Fatalf("produced %d of %d", got, i)
		}
	})
	b.Run("raw_channel_baseline", func(b *testing.B) {
		ch := make(chan tick.Tick, 4096)
		var n atomic.Int64
		done := make(chan struct{})
		go func() {
			for range ch {
				n.Add(1)
			}
			close(done)
		}()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ch <- ticks[i&7]
			i++
		}
		close(ch)
		<-done
	})
}
