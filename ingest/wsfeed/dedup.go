package wsfeed

import (
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/tick"
)

// dedup is a shard's duplicate filter. While a rotation runs, the old and
// the new connection carry the same streams and deliver the same records;
// the filter lets each (kind, pair) record through once and keeps every
// pair's records in order: a record from one connection is dropped when
// another connection already delivered it or something later.
//
// What identifies a record differs by kind:
//   - a tick by its exchange time: a pair's ticker is a series of
//     snapshots, so a snapshot no newer than the last one delivered adds
//     nothing;
//   - a trade by its trade id (kept for the pair's last recentTrades
//     trades), and a trade older than the last one delivered is out of
//     order;
//   - a quote by its update id (the book's sequence value the frame
//     carried for the pair: Binance u, Bybit u, OKX seqId, Coinbase
//     sequence), or its exchange time where the exchange sends none.
//
// Within one connection nothing is dropped: its order is the exchange's,
// as before rotations existed. A mark left by another connection binds
// only while that connection is open, or for overlap after it closed if it
// was part of a rotation (the new one may lag the old by a few records);
// so an exchange whose new connection's clock or sequence starts lower
// cannot hold a pair back for longer than that, and a reconnect after a
// drop (break, then make) passes everything as it always did: its gap
// record covers it.
//
// All of it is guarded by the shard's mutex.
type dedup struct {
	overlap int64 // Unix ns
	ticks   map[string]mark
	quotes  map[string]mark
	trades  map[string]*tradeMarks
}

// mark is the latest key delivered for one pair and the connection that
// delivered it.
type mark struct {
	key int64
	by  *session
}

// recentTrades is how many of a pair's trade ids are remembered: a new
// connection lags the old by milliseconds, a few trades on the busiest
// pairs.
const recentTrades = 256

type tradeMarks struct {
	mark // key: the latest trade time delivered, Unix ms
	ids  map[string]*session
	ring [recentTrades]string
	next int
}

// binds reports whether m, set by another connection than s, still holds s
// back at now (Unix ns).
func (d *dedup) binds(m mark, s *session, now int64) bool {
	return m.by != nil && m.by != s && (m.by.closedAt == 0 || m.by.overlapped && now-m.by.closedAt < d.overlap)
}

// pass decides on one keyed record of a pair in marks.
func (d *dedup) pass(marks *map[string]mark, sym string, key int64, s *session, now int64) bool {
	m, ok := (*marks)[sym]
	if ok && d.binds(m, s, now) && key <= m.key {
		return false
	}
	if *marks == nil {
		*marks = map[string]mark{}
	}
	if !ok || m.by != s || key > m.key {
		(*marks)[sym] = mark{key, s}
	}
	return true
}

func (d *dedup) tick(s *session, t *tick.Tick, now int64) bool {
	return d.pass(&d.ticks, t.Symbol, t.Timestamp, s, now)
}

// quote takes the quote's update id (0: none, use its time).
func (d *dedup) quote(s *session, q *tick.Quote, updateID uint64, now int64) bool {
	key := q.Timestamp
	if updateID != 0 {
		key = int64(updateID)
	}
	return d.pass(&d.quotes, q.Symbol, key, s, now)
}

func (d *dedup) trade(s *session, t *tick.Trade, now int64) bool {
	tm := d.trades[t.Symbol]
	if tm == nil {
		if d.trades == nil {
			d.trades = map[string]*tradeMarks{}
		}
		tm = &tradeMarks{ids: make(map[string]*session, recentTrades)}
		d.trades[t.Symbol] = tm
	}
	if by, ok := tm.ids[t.TradeID]; ok && by != s {
		return false // another connection delivered this very trade
	}
	if d.binds(tm.mark, s, now) && t.Timestamp < tm.key {
		return false // older than what another connection delivered
	}
	if old := tm.ring[tm.next]; old != "" {
		delete(tm.ids, old)
	}
	tm.ring[tm.next] = t.TradeID
	tm.ids[t.TradeID] = s
	tm.next = (tm.next + 1) % recentTrades
	if tm.by != s || t.Timestamp > tm.key {
		tm.mark = mark{t.Timestamp, s}
	}
	return true
}

// quoteUpdateID is the sequence value f carried for symbol's quote: in a
// frame without trades, a per-pair Seq is the quote's (or its ticker's,
// which the quote was taken from).
func quoteUpdateID(f *wire.Frame, symbol string) uint64 {
	if len(f.Trades) > 0 {
		return 0
	}
	var v uint64
	for i := range f.Seqs {
		if s := &f.Seqs[i]; s.Symbol == symbol && !s.Latest {
			v = max(v, s.Value)
		}
	}
	return v
}
