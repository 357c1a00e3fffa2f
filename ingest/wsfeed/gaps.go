package wsfeed

import (
	"context"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/tick"
)

// gapTracker finds a shard's reconnect gaps; the shard's mutex guards it.
// Tick times survive reconnects (a drop's gap runs from the pair's last
// tick before it to its first after). Sequence state is per connection
// (session.seqs), since a new connection starts new runs (snapshots,
// Coinbase's per-connection sequence_num) and the drop's own gap already
// covers it.
type gapTracker struct {
	last    map[string]int64  // symbol → exchange time of its last tick, Unix ms
	pending map[string]string // symbol → why its connection dropped since
}

type seqState struct {
	v  uint64
	ts int64 // exchange time of the record that carried v, Unix ms
}

// dropped notes that the connection ended for cause: every pair it carried
// owes a gap, closed by its next tick; but for the pairs that next, a
// rotation's new connection already running, has delivered (nil: none).
// The caller holds c.mu.
func (c *conn) dropped(cause string, next *session) {
	g := &c.gaps
	for sym := range g.last {
		if next != nil {
			if _, ok := next.seen[sym]; ok {
				continue
			}
		}
		if _, ok := g.pending[sym]; !ok {
			if g.pending == nil {
				g.pending = map[string]string{}
			}
			g.pending[sym] = cause
		}
	}
}

// sawTick closes the pair's gap, if its connection dropped since its last
// tick, and remembers the tick's time. The caller holds c.mu.
func (c *conn) sawTick(ctx context.Context, t *tick.Tick) {
	g := &c.gaps
	last, seen := g.last[t.Symbol]
	if cause, ok := g.pending[t.Symbol]; ok {
		delete(g.pending, t.Symbol)
		if seen && t.Timestamp >= last {
			c.gap(ctx, &tick.Gap{Exchange: t.Exchange, Symbol: t.Symbol, From: last, To: t.Timestamp,
				Reason: tick.GapReconnect, Cause: cause})
		}
	}
	if g.last == nil {
		g.last = map[string]int64{}
	}
	if !seen || t.Timestamp > last {
		g.last[t.Symbol] = t.Timestamp
	}
}

// sawSeqs checks the frame's sequence values against the stream's last on
// this connection (see wire.Seq for the rules) and records a gap for every
// jump. Only the connection's read loop calls it.
func (ss *session) sawSeqs(ctx context.Context, f *wire.Frame, nowMs int64) {
	c, g := ss.c, ss
	for _, s := range f.Seqs {
		if s.Symbol == "" {
			continue // a connection-wide counter: the drop covers it
		}
		key := s.Channel + "\x00" + s.Symbol
		ts := frameTime(f, s.Symbol, nowMs)
		prev, ok := g.seqs[key]
		if g.seqs == nil {
			g.seqs = map[string]seqState{}
		}
		if !ok || s.Reset {
			g.seqs[key] = seqState{s.Value, ts}
			continue
		}
		var jumped bool
		switch {
		case s.Latest:
			jumped = s.Value > prev.v
		case s.Contiguous && s.Prev != 0:
			jumped = s.Prev > prev.v
		case s.Contiguous:
			jumped = s.Value > prev.v+1
		}
		if jumped {
			c.gap(ctx, &tick.Gap{Exchange: c.f.o.Name, Symbol: s.Symbol, Channel: s.Channel, From: prev.ts, To: max(ts, prev.ts),
				Reason: tick.GapSequence, Cause: s.Field, FromSeq: prev.v, ToSeq: s.Value})
		}
		if s.Value > prev.v {
			g.seqs[key] = seqState{s.Value, ts}
		}
	}
}

// frameTime is the exchange time of the frame's first record for symbol,
// or def.
func frameTime(f *wire.Frame, symbol string, def int64) int64 {
	for i := range f.Trades {
		if f.Trades[i].Symbol == symbol {
			return f.Trades[i].Timestamp
		}
	}
	for i := range f.Ticks {
		if f.Ticks[i].Symbol == symbol {
			return f.Ticks[i].Timestamp
		}
	}
	for i := range f.Quotes {
		if f.Quotes[i].Symbol == symbol {
			return f.Quotes[i].Timestamp
		}
	}
	return def
}

// gap counts, logs and hands on one gap.
func (c *conn) gap(ctx context.Context, g *tick.Gap) {
	f := c.f
	g.DetectedAt = f.o.Clock.Now().UnixMicro()
	f.gapsTotal.WithLabelValues(f.o.Name, g.Reason).Inc()
	f.o.Logger.Info(f.o.Name+": gap", "conn", c.id, "symbol", g.Symbol, "channel", g.Channel, "reason", g.Reason,
		"cause", g.Cause, "from", g.From, "to", g.To, "from_seq", g.FromSeq, "to_seq", g.ToSeq)
	if f.o.Gaps != nil {
		f.o.Gaps.RecordGap(ctx, g)
	}
}
