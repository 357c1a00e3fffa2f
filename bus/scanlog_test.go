package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

// ScanLog reads what the log retained in the range, every pair in its own
// order and the partitions merged by event time, and ends at the log's end
// as it was when the scan started.
func TestScanLog(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	const pairs, per = 6, 50
	sent := produce(t, cc, pairs, per) // event times rise with the sequence
	minTS, maxTS := sent[0].Timestamp, sent[0].Timestamp
	for _, s := range sent {
		minTS, maxTS = min(minTS, s.Timestamp), max(maxTS, s.Timestamp)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		q    LogQuery
		keep func(*tick.Tick) bool
	}{
		{"whole log", LogQuery{}, func(*tick.Tick) bool { return true }},
		{"time range", LogQuery{From: time.UnixMilli(minTS + 10), To: time.UnixMilli(minTS + 30)},
			func(t *tick.Tick) bool { return t.Timestamp >= minTS+10 && t.Timestamp <= minTS+30 }},
		{"one pair", LogQuery{Keep: func(t *tick.Tick) bool { return t.Symbol == "SYM3USDT" }},
			func(t *tick.Tick) bool { return t.Symbol == "SYM3USDT" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []tick.Tick
			skipped, err := ScanLog(ctx, cc, topic, tc.q, func(t *tick.Tick) error { got = append(got, *t); return nil })
			if err != nil || skipped != 0 {
				t.Fatalf("ScanLog: skipped %d, err %v", skipped, err)
			}
			want := map[string][]int64{}
			n := 0
			for i := range sent {
				if tc.keep(&sent[i]) {
					want[sent[i].Key()] = append(want[sent[i].Key()], sent[i].Timestamp)
					n++
				}
			}
			if len(got) != n {
				t.Fatalf("got %d ticks, want %d", len(got), n)
			}
			per := map[string][]int64{}
			for i, g := range got {
				per[g.Key()] = append(per[g.Key()], g.Timestamp)
				// Each partition is in event-time order here, so the
				// merge is too.
				if i > 0 && g.Timestamp < got[i-1].Timestamp {
					t.Fatalf("tick %d at %d after %d: not merged by event time", i, g.Timestamp, got[i-1].Timestamp)
				}
			}
			for k, w := range want {
				if len(per[k]) != len(w) {
					t.Fatalf("%s: %d ticks, want %d", k, len(per[k]), len(w))
				}
				for i := range w {
					if per[k][i] != w[i] {
						t.Fatalf("%s tick %d at %d, want %d: a pair's order changed", k, i, per[k][i], w[i])
					}
				}
			}
		})
	}

	stop := errors.New("enough")
	n := 0
	if _, err := ScanLog(ctx, cc, topic, LogQuery{}, func(*tick.Tick) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Fatalf("callback error: got %v", err)
	}
	if _, err := ScanLog(ctx, cc, topic, LogQuery{From: time.UnixMilli(maxTS + 1)}, func(*tick.Tick) error {
		t.Fatal("a tick past the end of the range")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
