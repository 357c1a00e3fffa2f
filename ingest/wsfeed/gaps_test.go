package wsfeed

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/internal/wstest"
	"github.com/tickflow/tickflow/tick"
)

func gapConn(t *testing.T) (*conn, *wstest.Gaps, *prometheus.CounterVec) {
	t.Helper()
	gaps := &wstest.Gaps{}
	counter, err := ingest.NewGapCounter(nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &Feed{o: Options{Name: "toy", Gaps: gaps, Clock: clock.NewFake(t0)}, gapsTotal: counter}
	f.o.setDefaults() // logger
	return &conn{f: f}, gaps, counter
}

func seqFrame(s wire.Seq, ts int64) *wire.Frame {
	f := &wire.Frame{Kind: wire.Data, Seqs: []wire.Seq{s}}
	f.Trades = append(f.Trades, tick.Trade{Exchange: "toy", Symbol: s.Symbol, Timestamp: ts})
	return f
}

func TestSequenceGaps(t *testing.T) {
	ctx := context.Background()
	conn, gaps, counter := gapConn(t)
	c := &session{c: conn}
	contiguous := func(v uint64) wire.Seq {
		return wire.Seq{Channel: "trades", Symbol: "A", Field: "trade_id", Value: v, Contiguous: true}
	}
	c.sawSeqs(ctx, seqFrame(contiguous(10), 1000), 0)
	c.sawSeqs(ctx, seqFrame(contiguous(11), 1001), 0)
	c.sawSeqs(ctx, seqFrame(contiguous(11), 1001), 0) // a repeat: no gap
	c.sawSeqs(ctx, seqFrame(contiguous(15), 1005), 0) // 12..14 missed
	// Prev-linked (OKX): the previous value must be Prev.
	linked := wire.Seq{Channel: "trades", Symbol: "B", Field: "tradeId", Value: 100, Prev: 98, Contiguous: true}
	c.sawSeqs(ctx, seqFrame(linked, 2000), 0)
	linked.Value, linked.Prev = 103, 100
	c.sawSeqs(ctx, seqFrame(linked, 2003), 0) // follows on
	linked.Value, linked.Prev = 110, 105
	c.sawSeqs(ctx, seqFrame(linked, 2010), 0) // 104..105 missed
	// Only increasing: a jump says nothing.
	loose := wire.Seq{Channel: "ticker", Symbol: "C", Field: "sequence", Value: 1}
	c.sawSeqs(ctx, seqFrame(loose, 3000), 0)
	loose.Value = 500
	c.sawSeqs(ctx, seqFrame(loose, 3001), 0)
	// A reset starts over.
	reset := contiguous(3)
	reset.Reset = true
	c.sawSeqs(ctx, seqFrame(reset, 1010), 0)
	c.sawSeqs(ctx, seqFrame(contiguous(4), 1011), 0)

	got := gaps.All()
	want := []tick.Gap{
		{Exchange: "toy", Symbol: "A", Channel: "trades", From: 1001, To: 1005, Reason: tick.GapSequence, Cause: "trade_id", FromSeq: 11, ToSeq: 15},
		{Exchange: "toy", Symbol: "B", Channel: "trades", From: 2003, To: 2010, Reason: tick.GapSequence, Cause: "tradeId", FromSeq: 103, ToSeq: 110},
	}
	if len(got) != len(want) {
		t.Fatalf("gaps %+v, want %+v", got, want)
	}
	for i := range want {
		want[i].DetectedAt = got[i].DetectedAt
		if got[i] != want[i] {
			t.Errorf("gap %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if v := testutil.ToFloat64(counter.WithLabelValues("toy", tick.GapSequence)); v != 2 {
		t.Errorf("gaps_total{sequence} = %v", v)
	}
}

func TestReconnectGapsSpanTheDrop(t *testing.T) {
	ctx := context.Background()
	c, gaps, _ := gapConn(t)
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "A", Timestamp: 1000})
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "A", Timestamp: 1500})
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "B", Timestamp: 1200})
	c.dropped("stale", nil)
	c.dropped("dial", nil) // a failed redial does not restart the gap
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "A", Timestamp: 9000})
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "A", Timestamp: 9100}) // closed already
	got := gaps.All()
	if len(got) != 1 || got[0].Symbol != "A" || got[0].From != 1500 || got[0].To != 9000 || got[0].Cause != "stale" || got[0].Reason != tick.GapReconnect {
		t.Fatalf("gaps %+v", got)
	}
	c.sawTick(ctx, &tick.Tick{Exchange: "toy", Symbol: "B", Timestamp: 9050})
	if got := gaps.All(); len(got) != 2 || got[1].Symbol != "B" || got[1].From != 1200 || got[1].To != 9050 {
		t.Fatalf("gaps %+v", got)
	}
}
