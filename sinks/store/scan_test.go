package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

// Scan reads every selected tick once, oldest first across pairs, paging
// through a range larger than a page, with replayed copies collapsed.
func TestScanOrdersPagesAndDeduplicates(t *testing.T) {
	ch := clickHouse(t)
	s, _ := newSink(t, ch.HTTPURL(), nil)
	ctx := bg(t)
	const base = int64(1_700_000_000_000)
	var all []tick.Tick
	for i := 0; i < 40; i++ {
		// Three pairs, interleaved, with ties on event time across pairs.
		for _, p := range []struct{ ex, sym string }{{"binance", "BTCUSDT"}, {"okx", "BTC-USDT"}, {"binance", "ETHUSDT"}} {
			all = append(all, mkTick(p.ex, p.sym, base+int64(i/2)*1000, fmt.Sprintf("%d.5", 100+i)))
			all[len(all)-1].ReceivedAt += int64(i) // distinct ticks within a millisecond
		}
	}
	// A sparse pair over a month, and a burst in one millisecond: windows
	// that grow past empty stretches and shrink on a dense one.
	for k := int64(0); k < 30; k++ {
		all = append(all, mkTick("kraken", "BTC/USD", base+k*7*3600*1000, "50000.0"))
	}
	for k := int64(0); k < 25; k++ {
		b := mkTick("coinbase", "BTC-USD", base+3*24*3600*1000, "50001.00")
		b.ReceivedAt += k
		all = append(all, b)
	}
	// Written twice, as a replay after a lost commit would.
	for range 2 {
		if err := s.WriteBatch(ctx, all); err != nil {
			t.Fatal(err)
		}
	}
	want := append([]tick.Tick(nil), all...)
	sort.SliceStable(want, func(i, j int) bool {
		a, b := &want[i], &want[j]
		if a.Timestamp != b.Timestamp {
			return a.Timestamp < b.Timestamp
		}
		if a.ReceivedAt != b.ReceivedAt {
			return a.ReceivedAt < b.ReceivedAt
		}
		if a.Exchange != b.Exchange {
			return a.Exchange < b.Exchange
		}
		return a.Symbol < b.Symbol
	})
	filter := func(keep func(*tick.Tick) bool) []tick.Tick {
		var out []tick.Tick
		for i := range want {
			if keep(&want[i]) {
				out = append(out, want[i])
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		q    ScanQuery
		want []tick.Tick
	}{
		{"everything, pages of 7", ScanQuery{PageSize: 7}, want},
		{"one page", ScanQuery{}, want},
		{"time range", ScanQuery{From: time.UnixMilli(base + 5000), To: time.UnixMilli(base + 9000), PageSize: 4},
			filter(func(t *tick.Tick) bool { return t.Timestamp >= base+5000 && t.Timestamp <= base+9000 })},
		{"one exchange", ScanQuery{Exchanges: []string{"okx"}, PageSize: 5}, filter(func(t *tick.Tick) bool { return t.Exchange == "okx" })},
		{"symbols", ScanQuery{Symbols: []string{"ETHUSDT", "BTC-USDT"}, PageSize: 9},
			filter(func(t *tick.Tick) bool { return t.Symbol == "ETHUSDT" || t.Symbol == "BTC-USDT" })},
		{"sparse and dense", ScanQuery{Exchanges: []string{"kraken", "coinbase"}, PageSize: 4},
			filter(func(t *tick.Tick) bool { return t.Exchange == "kraken" || t.Exchange == "coinbase" })},
		{"nothing", ScanQuery{From: time.UnixMilli(base + 40*24*3600*1000)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []tick.Tick
			if err := s.Scan(ctx, tc.q, func(t *tick.Tick) error { got = append(got, *t); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("scan returned %d ticks, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if err := sameTick(&got[i], &tc.want[i]); err != nil {
					t.Fatalf("tick %d: %v", i, err)
				}
			}
		})
	}

	stop := errors.New("enough")
	n := 0
	err := s.Scan(ctx, ScanQuery{PageSize: 3}, func(*tick.Tick) error {
		if n++; n == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 5 {
		t.Fatalf("scan stopped by its callback: err %v after %d ticks, want %v after 5", err, n, stop)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Scan(cctx, ScanQuery{}, func(*tick.Tick) error { return nil }); err == nil {
		t.Fatal("scan with a cancelled context succeeded")
	}
}
