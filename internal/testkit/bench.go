package testkit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

// CountingPublisher accepts every record at once and only counts them: a
// bus that costs a benchmark nothing.
type CountingPublisher struct{ n atomic.Int64 }

// Publish counts the record.
func (c *CountingPublisher) Publish(context.Context, string, []byte, []byte) error {
	c.n.Add(1)
	return nil
}

// Count is how many records were published.
func (c *CountingPublisher) Count() int64 { return c.n.Load() }

// RunBatches feeds b.N ticks to write in batches of batch, cycling through
// ticks; on every pass their event times move forward (one ms per tick
// overall), so a sink that skips replayed ticks by event time applies
// every one. It reports ticks/s.
func RunBatches(b *testing.B, ticks []tick.Tick, batch int, write func([]tick.Tick) error) {
	set := len(ticks)
	var now int64 = 1_700_000_000_000
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		if done%set == 0 {
			b.StopTimer()
			for i := range ticks {
				ticks[i].Timestamp = now
				now++
			}
			b.StartTimer()
		}
		off := done % set
		n := min(batch, b.N-done, set-off)
		if err := write(ticks[off : off+n]); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ticks/s")
}

// BenchDecode is the raw baseline a sink's throughput compares with:
// decoding ticks from their JSON, the work the runtime does for every
// sink before WriteBatch. One op is one tick; it reports ticks/s.
func BenchDecode(b *testing.B, ticks []tick.Tick) {
	raw := make([][]byte, len(ticks))
	for i := range ticks {
		raw[i] = ticks[i].AppendJSON(nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var t tick.Tick
	for i := 0; i < b.N; i++ {
		if err := tick.Unmarshal(raw[i%len(raw)], &t); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ticks/s")
}

// Batcher is a sink as the runtime feeds it.
type Batcher interface {
	WriteBatch(ctx context.Context, batch []tick.Tick) error
}

// Write hands ticks to s as one batch, failing the test if it fails.
func Write(t testing.TB, s Batcher, ticks ...tick.Tick) {
	t.Helper()
	if err := s.WriteBatch(context.Background(), ticks); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}
