package replay

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/tick"
)

var t0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// recorder is a Producer that notes when (on the clock) each tick came.
type recorder struct {
	clk     clock.Clock
	mu      sync.Mutex
	keys    []string
	at      []time.Duration
	fail    error
	flushed bool
}

func (r *recorder) Produce(_ context.Context, t *tick.Tick) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, t.Key())
	r.at = append(r.at, r.clk.Now().Sub(t0))
	return nil
}
func (r *recorder) Flush(context.Context) error {
	r.mu.Lock()
	r.flushed = true
	r.mu.Unlock()
	return nil
}
func (r *recorder) Err() error { return r.fail }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func ticksAt(ms ...int64) Source {
	return SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		for i, m := range ms {
			t := tick.Tick{Exchange: "binance", Symbol: []string{"BTCUSDT", "ETHUSDT"}[i%2], Timestamp: 1_700_000_000_000 + m}
			if err := fn(&t); err != nil {
				return err
			}
		}
		return nil
	})
}

func TestPacing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		speed float64
		want  []time.Duration // when each tick goes out, from the start
	}{
		{"as recorded", 1, []time.Duration{0, 0, 100 * time.Millisecond, time.Second}},
		{"ten times faster", 10, []time.Duration{0, 0, 10 * time.Millisecond, 100 * time.Millisecond}},
		{"flat out", 0, []time.Duration{0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			rec := &recorder{clk: clk}
			done := make(chan error, 1)
			var st Stats
			go func() {
				var err error
				st, err = Run(context.Background(), ticksAt(0, 0, 100, 1000), rec, Options{Speed: tc.speed, Clock: clk})
				done <- err
			}()
			// Drive the clock from one due time to the next.
			for i := 1; i < len(tc.want); i++ {
				if gap := tc.want[i] - tc.want[i-1]; gap > 0 {
					if !clk.WaitTimersFor(1, 5*time.Second) {
						t.Fatalf("replay not waiting before tick %d", i)
					}
					clk.Advance(gap)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for i, at := range rec.at {
				if at != tc.want[i] {
					t.Errorf("tick %d went out at +%s, want +%s", i, at, tc.want[i])
				}
			}
			if st.Ticks != 4 || st.First != 1_700_000_000_000 || st.Last != 1_700_000_001_000 || !rec.flushed {
				t.Errorf("stats %+v, flushed %v", st, rec.flushed)
			}
		})
	}
}

func TestStopsAndReports(t *testing.T) {
	clk := clock.NewFake(t0)
	rec := &recorder{clk: clk}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, ticksAt(0, 60_000), rec, Options{Speed: 1, Clock: clk})
		done <- err
	}()
	if !clk.WaitTimersFor(1, 5*time.Second) {
		t.Fatal("replay not waiting for the second tick")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || rec.count() != 1 || !rec.flushed {
		t.Fatalf("stopped replay: err %v, %d produced, flushed %v", err, rec.count(), rec.flushed)
	}

	refused := errors.New("NOT_ENOUGH_REPLICAS")
	rec = &recorder{clk: clk, fail: refused}
	if _, err := Run(context.Background(), ticksAt(0), rec, Options{}); !errors.Is(err, refused) {
		t.Fatalf("a refused tick: err %v, want %v", err, refused)
	}

	var out bytes.Buffer
	rec = &recorder{clk: clk}
	if _, err := Run(context.Background(), ticksAt(0, 0, 0), rec, Options{Progress: &out, Clock: clk}); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "replay: 3 ticks") || !strings.HasSuffix(s, "\n") {
		t.Fatalf("progress output %q", s)
	}
}
