package push

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/sinks"
)

// queueClient is a client without a connection, to drive its queue by hand
// on a fake clock.
func queueClient(t *testing.T, queueBytes int, maxLag time.Duration) (*client, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	cfg := DefaultConfig()
	cfg.Limits.QueueBytes = queueBytes
	cfg.Limits.MaxLag = maxLag
	s, err := New(sinks.Env{Clock: clk}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(s, nil, nil), clk
}

func tickMsg(pair string, n int) *message {
	ex, sym, _ := strings.Cut(pair, ":")
	return &message{data: fmt.Appendf(nil, "%-100d", n), ch: chTick, exchange: ex, symbol: sym, pair: pair, ts: int64(n)}
}

func contents(batch []*message) []string {
	var out []string
	for _, m := range batch {
		if m == nil {
			continue // a conflated tick's place
		}
		out = append(out, fmt.Sprintf("%s=%s", m.pair, strings.TrimSpace(string(m.data))))
	}
	return out
}

func TestQueueConflatesThenDisconnects(t *testing.T) {
	tests := []struct {
		name        string
		enqueue     []string // pair per 100-byte tick; "alert" is a 100-byte event
		wantQueue   []string
		wantSkipped uint64
		wantClosed  string
	}{
		{
			name:      "under half the bound: every tick kept in order",
			enqueue:   []string{"a:X", "a:X", "a:Y", "a:X"},
			wantQueue: []string{"a:X=1", "a:X=2", "a:Y=3", "a:X=4"},
		},
		{
			// 1000 bytes: conflation starts past 500, i.e. with the 6th message.
			// The newest tick goes to the end, so ticks keep their order
			// (a partition's offsets never go backwards for the client).
			name:        "past half: newest tick per pair replaces the queued one, at the end",
			enqueue:     []string{"a:X", "a:Y", "a:X", "a:Y", "a:X", "a:Y", "a:X", "alert", "a:Y", "a:Z"},
			wantQueue:   []string{"a:X=1", "a:Y=2", "a:X=3", "a:Y=4", "a:X=7", "alert=8", "a:Y=9", "a:Z=10"},
			wantSkipped: 2,
		},
		{
			name:       "past the bound: disconnected, queue dropped",
			enqueue:    []string{"a:A", "a:B", "a:C", "a:D", "a:E", "a:F", "a:G", "a:H", "a:I", "a:J", "a:K"},
			wantClosed: "more than 1000 bytes queued",
		},
		{
			// Quotes are states like ticks; trades are events like alerts.
			name:        "quotes conflate, trades never",
			enqueue:     []string{"quote", "quote", "quote", "quote", "quote", "quote", "quote", "trade", "trade"},
			wantQueue:   []string{"a:Q=1", "a:Q=2", "a:Q=3", "a:Q=4", "a:Q=5", "a:Q=7", "a:Q=8", "a:Q=9"},
			wantSkipped: 1,
		},
		{
			name:      "alerts never conflate",
			enqueue:   []string{"alert", "alert", "alert", "alert", "alert", "alert", "alert"},
			wantQueue: []string{"alert=1", "alert=2", "alert=3", "alert=4", "alert=5", "alert=6", "alert=7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := queueClient(t, 1000, time.Second)
			for i, p := range tt.enqueue {
				m := tickMsg(p, i+1)
				switch p {
				case "alert":
					m.ch = chAlert
				case "quote", "trade":
					m = tickMsg("a:Q", i+1)
					m.ch = map[string]channel{"quote": chQuote, "trade": chTrade}[p]
				}
				c.enqueue(m, clk.Now().UnixNano())
			}
			batch, skipped, final := c.take()
			if tt.wantClosed != "" {
				if final == nil || final.code != codeSlowConsumer || !strings.Contains(final.reason, tt.wantClosed) {
					t.Fatalf("final = %+v, want slow_consumer %q", final, tt.wantClosed)
				}
				if len(batch) != 0 {
					t.Fatalf("a slow client's stale queue must be dropped, got %v", contents(batch))
				}
				return
			}
			if final != nil {
				t.Fatalf("closed: %+v", final)
			}
			if got := contents(batch); strings.Join(got, " ") != strings.Join(tt.wantQueue, " ") {
				t.Errorf("queue = %v\nwant    %v", got, tt.wantQueue)
			}
			if skipped != tt.wantSkipped {
				t.Errorf("skipped = %d, want %d", skipped, tt.wantSkipped)
			}
			// After the writer took everything the client starts afresh.
			c.enqueue(tickMsg("a:X", 100), clk.Now().UnixNano())
			c.enqueue(tickMsg("a:X", 101), clk.Now().UnixNano())
			if b, s, _ := c.take(); len(b) != 2 || s != 0 {
				t.Errorf("after take: %v skipped %d, want both ticks unconflated", contents(b), s)
			}
		})
	}
}

func TestQueueLag(t *testing.T) {
	c, clk := queueClient(t, 1<<20, time.Second)
	now := func() int64 { return clk.Now().UnixNano() }
	c.enqueue(tickMsg("a:X", 1), now())
	clk.Advance(900 * time.Millisecond)
	c.enqueue(tickMsg("a:X", 2), now())
	if _, _, final := c.take(); final != nil {
		t.Fatalf("closed within max_lag: %+v", final)
	}
	// The writer took the queue: the clock for lag restarts with the next
	// message, however old the client's subscription.
	clk.Advance(5 * time.Second)
	c.enqueue(tickMsg("a:X", 3), now())
	clk.Advance(time.Second)
	c.enqueue(tickMsg("a:X", 4), now()) // exactly max_lag: still fine
	if c.closing() {
		t.Fatal("closed at exactly max_lag")
	}
	clk.Advance(time.Millisecond)
	c.enqueue(tickMsg("a:X", 5), now())
	_, _, final := c.take()
	if final == nil || final.code != codeSlowConsumer || !strings.Contains(final.reason, "nothing read for more than 1s") {
		t.Fatalf("final = %+v, want slow_consumer for lag", final)
	}
	// Nothing more is queued to a closing client.
	c.enqueue(tickMsg("a:X", 6), now())
	if b, _, _ := c.take(); len(b) != 0 {
		t.Fatalf("queued after close: %v", contents(b))
	}
}

func TestTokenBucket(t *testing.T) {
	b := newBucket(2, 3, 0) // 2 per second, burst 3
	var got []bool
	for _, at := range []time.Duration{0, 0, 0, 0, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second} {
		got = append(got, b.allow(at.Nanoseconds()))
	}
	want := []bool{true, true, true, false, false, true, false, true, true, true, false}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("allow = %v\nwant    %v", got, want)
	}
}

// Conflation keeps positions honest: however a fast hub and a slow writer
// interleave, each partition's offsets reach the client in increasing
// order (so its position never passes a tick it has not seen without
// being told), and every tick not delivered is counted in a conflated
// frame. Rare takes let conflation run long enough to compact the queue.
func TestQueuePositionsHonestUnderConflation(t *testing.T) {
	for _, tt := range []struct {
		name      string
		takeEvery int // one step in takeEvery is a take
	}{{"writer a little behind", 30}, {"writer stalls, queue compacts", 600}} {
		for seed := int64(1); seed <= 5; seed++ {
			t.Run(fmt.Sprintf("%s/seed %d", tt.name, seed), func(t *testing.T) {
				c, clk := queueClient(t, 4000, time.Hour)
				r := rand.New(rand.NewSource(seed))
				next, last := map[int32]int64{}, map[int32]int64{}
				enqueued, delivered := 0, 0
				var skipped uint64
				take := func() {
					batch, s, final := c.take()
					if final != nil {
						t.Fatalf("closed: %+v", final)
					}
					skipped += s
					for _, m := range batch {
						if m == nil {
							continue
						}
						if l, ok := last[m.part]; ok && m.off <= l {
							t.Fatalf("partition %d: offset %d after %d", m.part, m.off, l)
						}
						last[m.part] = m.off
						delivered++
					}
				}
				for step := range 5000 {
					if r.Intn(tt.takeEvery) == 0 {
						take()
						continue
					}
					p := int32(r.Intn(3))
					m := tickMsg(fmt.Sprintf("p%d:s%d", p, r.Intn(4)), step)
					m.positioned, m.part, m.off = true, p, next[p]
					next[p]++
					c.enqueue(m, clk.Now().UnixNano())
					enqueued++
				}
				take()
				if uint64(enqueued) != uint64(delivered)+skipped {
					t.Fatalf("enqueued %d, delivered %d + reported skipped %d", enqueued, delivered, skipped)
				}
				if skipped == 0 {
					t.Fatal("nothing conflated: the case does not test conflation")
				}
			})
		}
	}
}
