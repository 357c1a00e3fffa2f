package testkit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// T0 is an arbitrary event time (Unix ms) test ticks count from.
const T0 = int64(1_700_000_000_000)

// TickAt is a tick of exchange:symbol at price, at offset at from T0.
func TickAt(exchange, symbol string, at time.Duration, price string) tick.Tick {
	return tick.Tick{Exchange: exchange, Symbol: symbol, Timestamp: T0 + at.Milliseconds(), Price: tick.MustDecimal(price)}
}

// Path is one pair's prices, step apart from T0 on.
func Path(exchange, symbol string, step time.Duration, prices ...string) []tick.Tick {
	out := make([]tick.Tick, len(prices))
	for i, p := range prices {
		out[i] = TickAt(exchange, symbol, time.Duration(i)*step, p)
	}
	return out
}

// Connecter is a sink as the runtime connects and feeds it.
type Connecter interface {
	Batcher
	Connect(ctx context.Context) error
}

// Harness is a sink under test with a Publisher recording what it sends
// and a metrics registry of its own. Build the sink with Bus and Reg, then
// hand it to Connect.
type Harness[S Connecter] struct {
	T    testing.TB
	Sink S
	Bus  *Publisher
	Reg  *prometheus.Registry
}

// NewHarness makes the bus and the registry.
func NewHarness[S Connecter](t testing.TB) *Harness[S] {
	return &Harness[S]{T: t, Bus: &Publisher{}, Reg: prometheus.NewRegistry()}
}

// Connect connects s, failing the test if it fails, and keeps it as the
// sink under test.
func (h *Harness[S]) Connect(s S) {
	h.T.Helper()
	if err := s.Connect(context.Background()); err != nil {
		h.T.Fatalf("Connect: %v", err)
	}
	h.Sink = s
}

// Write hands ticks to the sink as one batch, failing the test if it fails.
func (h *Harness[S]) Write(ticks ...tick.Tick) {
	h.T.Helper()
	Write(h.T, h.Sink, ticks...)
}

// Counter reads a series of the sink's registry (see Metric).
func (h *Harness[S]) Counter(name string, labels ...string) float64 {
	return Metric(h.Reg, name, labels...)
}
