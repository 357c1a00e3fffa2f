package sim

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

type collector struct {
	mu    sync.Mutex
	ticks []tick.Tick
	err   error // returned by Enqueue when set
}

func (c *collector) Enqueue(_ context.Context, t *tick.Tick) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.ticks = append(c.ticks, *t)
	return nil
}

func (c *collector) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ticks)
}

// run drives a simulator on a fake clock for n ticks and returns them.
func run(t *testing.T, o Options, n int) ([]tick.Tick, *Feed, *prometheus.Registry) {
	t.Helper()
	clk := clock.NewFake(t0)
	out := &collector{}
	reg := prometheus.NewRegistry()
	o.Clock, o.Queue, o.Metrics = clk, out, reg
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	gap := o.Interval / time.Duration(len(o.Symbols))
	for i := 1; i < n; i++ {
		testkit.Eventually(t, 10*time.Second, "a tick", func() bool { return out.n() == i })
		// One timer, the wait for the next tick: move exactly to it.
		done := make(chan struct{})
		go func() { clk.WaitTimers(1); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("simulator did not schedule its next tick")
		}
		clk.Advance(gap)
	}
	testkit.Eventually(t, 10*time.Second, "the last tick", func() bool { return out.n() == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	return append([]tick.Tick(nil), out.ticks...), f, reg
}

func wire(ts []tick.Tick) []string {
	var out []string
	for i := range ts {
		out = append(out, string(ts[i].AppendJSON(nil)))
	}
	return out
}

func TestDeterministicWithASeed(t *testing.T) {
	o := Options{Symbols: []string{"BTCUSDT", "ETHUSDT", "FOOBAR"}, Interval: time.Second, Seed: 42}
	a, _, _ := run(t, o, 60)
	b, _, _ := run(t, o, 60)
	if strings.Join(wire(a), "\n") != strings.Join(wire(b), "\n") {
		t.Fatal("two runs with the same seed and clock differ")
	}
	o.Seed = 43
	c, _, _ := run(t, o, 60)
	if strings.Join(wire(a), "\n") == strings.Join(wire(c), "\n") {
		t.Fatal("different seeds gave the same run")
	}
}

func TestRandomSeedIsReported(t *testing.T) {
	f, err := New(Options{Symbols: []string{"BTCUSDT"}, Queue: &collector{}})
	if err != nil {
		t.Fatal(err)
	}
	if f.Seed() == 0 {
		t.Fatal("seed 0 should pick (and report) a random seed")
	}
}

func TestTicksAreValidExactAndOnSchedule(t *testing.T) {
	symbols := []string{"BTCUSDT", "XRPUSDT", "ZZZTEST"}
	const interval = 300 * time.Millisecond
	ticks, _, reg := run(t, Options{Symbols: symbols, Interval: interval, Seed: 7}, 300)
	m, _ := ingest.NewMetrics(reg)
	scale := map[string]int32{"BTCUSDT": -2, "XRPUSDT": -4, "ZZZTEST": -4}
	last := map[string]int64{}
	count := map[string]int{}
	for i, tk := range ticks {
		if err := tk.Validate(); err != nil {
			t.Fatalf("tick %d invalid: %v (%s)", i, err, tk.AppendJSON(nil))
		}
		if tk.Exchange != "sim" {
			t.Fatalf("tick %d says exchange %q", i, tk.Exchange)
		}
		if want := symbols[i%len(symbols)]; tk.Symbol != want {
			t.Fatalf("tick %d is %s, want %s (round robin)", i, tk.Symbol, want)
		}
		// Exact decimals at the symbol's fixed scale.
		for name, d := range map[string]*apd.Decimal{"price": &tk.Price, "bid": &tk.Bid, "ask": &tk.Ask,
			"open": &tk.Open24h, "high": &tk.High24h, "low": &tk.Low24h} {
			if d.Exponent != scale[tk.Symbol] || d.Form != apd.Finite {
				t.Fatalf("tick %d %s %s has exponent %d, want %d", i, name, d, d.Exponent, scale[tk.Symbol])
			}
		}
		if tk.Bid.Cmp(&tk.Price) >= 0 || tk.Ask.Cmp(&tk.Price) <= 0 {
			t.Fatalf("tick %d: bid %s, price %s, ask %s", i, &tk.Bid, &tk.Price, &tk.Ask)
		}
		if tk.Low24h.Cmp(&tk.Price) > 0 || tk.High24h.Cmp(&tk.Price) < 0 || tk.Low24h.Sign() <= 0 {
			t.Fatalf("tick %d: price %s outside 24h range %s..%s", i, &tk.Price, &tk.Low24h, &tk.High24h)
		}
		if tk.Open24h.Sign() <= 0 || tk.Volume.Sign() <= 0 || tk.QuoteVolume.Sign() <= 0 {
			t.Fatalf("tick %d: open %s, volume %s, quote volume %s", i, &tk.Open24h, &tk.Volume, &tk.QuoteVolume)
		}
		// Each symbol ticks every interval, the symbols staggered inside it.
		if prev, ok := last[tk.Symbol]; ok && tk.Timestamp-prev != interval.Milliseconds() {
			t.Fatalf("%s ticked %d ms after its previous tick, want %d", tk.Symbol, tk.Timestamp-prev, interval.Milliseconds())
		}
		if tk.ReceivedAt != tk.Timestamp*1000 {
			t.Fatalf("tick %d: received_at %d, event time %d ms", i, tk.ReceivedAt, tk.Timestamp)
		}
		last[tk.Symbol] = tk.Timestamp
		count[tk.Symbol]++
	}
	if ticks[0].Timestamp != t0.UnixMilli() {
		t.Errorf("first tick at %d, want the start time %d", ticks[0].Timestamp, t0.UnixMilli())
	}
	for _, s := range symbols {
		if got := testutil.ToFloat64(m.Received.WithLabelValues("sim", s)); got != float64(count[s]) {
			t.Errorf("ticks_received_total{sim,%s} = %v, want %d", s, got, count[s])
		}
	}
}

func TestRollingDayEvolves(t *testing.T) {
	// One symbol every 10 minutes for 30 hours.
	ticks, _, _ := run(t, Options{Symbols: []string{"ETHUSDT"}, Interval: 10 * time.Minute, Seed: 3}, 6*30)
	opens := map[string]bool{}
	for i, tk := range ticks {
		opens[tk.Open24h.String()] = true
		// Every price seen in the past 23 hours lies inside the 24h range.
		for j := i; j >= 0 && tk.Timestamp-ticks[j].Timestamp < (23*time.Hour).Milliseconds(); j-- {
			p := &ticks[j].Price
			if p.Cmp(&tk.Low24h) < 0 || p.Cmp(&tk.High24h) > 0 {
				t.Fatalf("tick %d: price %s from %d min earlier is outside 24h range %s..%s",
					i, p, (tk.Timestamp-ticks[j].Timestamp)/60000, &tk.Low24h, &tk.High24h)
			}
		}
	}
	if len(opens) < 25 {
		t.Errorf("24h open took %d values over 30 hours; it should move hourly", len(opens))
	}
	// After a full day of live trading the window holds only live trades.
	// It is 24 hourly buckets (hours counted from the start), so it opens
	// at the start of the hour 23 hours before the current one, and its
	// open is the last price before that.
	last := ticks[len(ticks)-1]
	hour := time.Hour.Milliseconds()
	windowStart := t0.UnixMilli() + (last.Timestamp-t0.UnixMilli())/hour*hour - 23*hour
	var want *apd.Decimal
	for j := range ticks {
		if ticks[j].Timestamp >= windowStart {
			break
		}
		want = &ticks[j].Price
	}
	if want == nil || last.Open24h.Cmp(want) != 0 {
		t.Errorf("24h open %s, want the last price before the window opened (%v)", &last.Open24h, want)
	}
}

func TestOptions(t *testing.T) {
	q := &collector{}
	for _, tc := range []struct {
		name string
		o    Options
		err  string
	}{
		{"valid", Options{Symbols: []string{"btcusdt"}, Queue: q}, ""},
		{"no symbols", Options{Queue: q}, "symbols: none"},
		{"bad symbol", Options{Symbols: []string{"BTC/USDT"}, Queue: q}, "bad symbol"},
		{"duplicate", Options{Symbols: []string{"BTCUSDT", "btcusdt"}, Queue: q}, "twice"},
		{"negative interval", Options{Symbols: []string{"BTCUSDT"}, Interval: -time.Second, Queue: q}, "interval"},
		{"no queue", Options{Symbols: []string{"BTCUSDT"}}, "queue: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.o)
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("New = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestStopsWhenTheQueueCloses(t *testing.T) {
	out := &collector{err: ingest.ErrClosed}
	f, err := New(Options{Symbols: []string{"BTCUSDT"}, Queue: out, Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background()); !errors.Is(err, ingest.ErrClosed) {
		t.Fatalf("Run = %v, want the queue's ErrClosed", err)
	}
}
