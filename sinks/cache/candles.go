package cache

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/tick"
)

// Rolling candles.
//
// The cache keeps one-minute OHLC buckets per pair, built from the tick
// stream as it is written, for CandleRetention behind the pair's newest
// bucket; coarser intervals (5m, 15m, 1h, 1d) are merged from the 1m
// buckets on read, which costs a read at most 1440 small merges and the
// write path nothing. Buckets are aligned to the Unix epoch, as the
// store's are.
//
// The write path must be idempotent: the runtime retries a failed batch
// and replays from the last commit after a crash or a partition move. OHLC
// merges are (each price carries the identity of the tick that set it, and
// a merge keeps the earlier open, the later close, the greater high and
// the lesser low, ties broken by identity, so the same tick merged twice
// changes nothing). A count is not, so each pair keeps a watermark: the
// greatest (receive time, event time) it has counted. A tick at or below
// it is a redelivery and is not counted again; a tick above it is new,
// and lands in the bucket of its event time, however late it is, as long
// as that bucket is still retained. Receive time orders the stream
// because ingest stamps it as it reads the frame and the pump keeps a
// pair's order into its partition, so a replay is always a prefix of what
// was already seen, while a late tick (old event time) was received later.
//
// What this does not count, and says here rather than hides: a tick whose
// receive time is not above the watermark though it was never seen. That
// happens when a pair's ticks reach the sink out of receive order: after
// the tick topic gained partitions, while the old partitions' backlog
// drains (docs/ARCHITECTURE.md "Partitions"); after the ingest host's wall
// clock stepped backwards, until it passes the watermark again; or with
// two ingest processes publishing the same pair. Also not counted: a
// second tick with the same receive and event time (the store keeps one
// row for those too).

// candleBucket is the width of the buckets the cache keeps.
const candleBucket = time.Minute

const candleBucketMS = int64(candleBucket / time.Millisecond)

// pos is a tick's place in the stream as the watermark orders it.
type pos struct{ recv, ts int64 }

// noPos is below every tick's position (receive times are >= 0).
var noPos = pos{-1, -1}

func (a pos) less(b pos) bool { return a.recv < b.recv || (a.recv == b.recv && a.ts < b.ts) }

func tickPos(t *tick.Tick) pos { return pos{t.ReceivedAt, t.Timestamp} }

// mark is the identity of the tick that set a price: event time, then
// receive time, the order the store's candles break ties in.
type mark struct{ ts, recv int64 }

func (a mark) less(b mark) bool { return a.ts < b.ts || (a.ts == b.ts && a.recv < b.recv) }

// candleAgg is one bucket as the cache keeps it.
type candleAgg struct {
	start                          int64 // Unix ms
	open, high, low, close         apd.Decimal
	openAt, highAt, lowAt, closeAt mark
	ticks                          uint64
	// volume and trades are the bucket's trades (volume.go), attached on
	// read; zero when none were counted.
	volume apd.Decimal
	trades uint64
}

func newAgg(start int64, t *tick.Tick) candleAgg {
	m := mark{t.Timestamp, t.ReceivedAt}
	a := candleAgg{start: start, openAt: m, highAt: m, lowAt: m, closeAt: m, ticks: 1}
	a.open.Set(&t.Price)
	a.high.Set(&t.Price)
	a.low.Set(&t.Price)
	a.close.Set(&t.Price)
	return a
}

// merge folds o into a. It is commutative and, for the prices,
// idempotent; ticks add up, which is why only unseen ticks are merged.
func (a *candleAgg) merge(o *candleAgg) {
	if o.openAt.less(a.openAt) {
		a.open.Set(&o.open)
		a.openAt = o.openAt
	}
	if a.closeAt.less(o.closeAt) {
		a.close.Set(&o.close)
		a.closeAt = o.closeAt
	}
	// The first tick to reach the high (or low) supplies its spelling,
	// as in the store ("100.5" and "100.50" are one price).
	if c := o.high.Cmp(&a.high); c > 0 || (c == 0 && o.highAt.less(a.highAt)) {
		a.high.Set(&o.high)
		a.highAt = o.highAt
	}
	if c := o.low.Cmp(&a.low); c < 0 || (c == 0 && o.lowAt.less(a.lowAt)) {
		a.low.Set(&o.low)
		a.lowAt = o.lowAt
	}
	a.ticks += o.ticks
	if o.trades > 0 {
		// Exact: BaseContext does not round an addition.
		_, _ = apd.BaseContext.Add(&a.volume, &a.volume, &o.volume)
		a.trades += o.trades
	}
}

// clone deep-copies a: an apd.Decimal copied by assignment shares its
// coefficient's storage.
func (a *candleAgg) clone() candleAgg {
	c := *a
	for _, p := range [...]struct{ dst, src *apd.Decimal }{
		{&c.open, &a.open}, {&c.high, &a.high}, {&c.low, &a.low}, {&c.close, &a.close}, {&c.volume, &a.volume}} {
		*p.dst = apd.Decimal{}
		p.dst.Set(p.src)
	}
	return c
}

func (a *candleAgg) candle() tick.Candle {
	c := tick.Candle{Start: time.UnixMilli(a.start).UTC(), Ticks: a.ticks, Trades: a.trades}
	if a.trades > 0 {
		c.Volume.Set(&a.volume)
	}
	c.Open.Set(&a.open)
	c.High.Set(&a.high)
	c.Low.Set(&a.low)
	c.Close.Set(&a.close)
	return c
}

func bucketOf(ts, width int64) int64 { return ts / width * width }

// candleUpdate is one pair's share of a batch for the candles: the
// buckets of the ticks above the watermark it was computed against, and
// what a backend needs to check that watermark is still the stored one.
type candleUpdate struct {
	aggs []candleAgg // ascending by start
	// lo is the least position merged (noPos's opposite when none was),
	// skipped the greatest position left out as seen (noPos when none
	// was). The update is right for a stored watermark w exactly when
	// skipped <= w < lo: then the ticks above w are the ones merged.
	lo, skipped pos
	// top is the greatest position in the batch: the new watermark.
	top pos
}

// maxPos is above every position.
var maxPos = pos{1<<63 - 1, 1<<63 - 1}

// accepts reports whether u was computed for the stored watermark w.
func (u *candleUpdate) accepts(w pos) bool { return !w.less(u.skipped) && w.less(u.lo) }

// candleUpdateFor aggregates g's ticks that are above w into 1m buckets.
func candleUpdateFor(g *group, w pos) candleUpdate {
	u := candleUpdate{lo: maxPos, skipped: noPos, top: w}
	fresh := make([]*tick.Tick, 0, len(g.entries))
	for _, e := range g.entries {
		p := tickPos(e.t)
		if u.top.less(p) {
			u.top = p
		}
		if !w.less(p) {
			if u.skipped.less(p) {
				u.skipped = p
			}
			continue
		}
		if p.less(u.lo) {
			u.lo = p
		}
		fresh = append(fresh, e.t)
	}
	// By bucket, then position, so a repeated (receive, event) time within
	// the batch is counted once.
	sort.Slice(fresh, func(i, j int) bool {
		bi, bj := bucketOf(fresh[i].Timestamp, candleBucketMS), bucketOf(fresh[j].Timestamp, candleBucketMS)
		if bi != bj {
			return bi < bj
		}
		return tickPos(fresh[i]).less(tickPos(fresh[j]))
	})
	for i, t := range fresh {
		if i > 0 && tickPos(fresh[i-1]) == tickPos(t) {
			continue
		}
		start := bucketOf(t.Timestamp, candleBucketMS)
		a := newAgg(start, t)
		if n := len(u.aggs); n > 0 && u.aggs[n-1].start == start {
			u.aggs[n-1].merge(&a)
			continue
		}
		u.aggs = append(u.aggs, a)
	}
	return u
}

// candleState is what a backend reports of a pair's candles on read.
type candleState struct {
	aggs []candleAgg // 1m buckets, ascending by start
	// first is the bucket of the first tick the cache counted for the
	// pair (possibly cut short: the cache started mid-bucket), newest the
	// pair's newest bucket; both zero when it holds nothing.
	first, newest int64
}

// since is tick.CandleWindow.Since: every tick from the bucket after the
// first one on, within the retained window.
func (s *candleState) since(retention time.Duration) int64 {
	if s.first == 0 && s.newest == 0 {
		return 0
	}
	return max(s.first+candleBucketMS, s.newest-retention.Milliseconds())
}

// window answers q from s: the 1m buckets in [From, To), merged into
// q.Interval buckets.
func (s *candleState) window(q tick.CandleQuery, retention time.Duration) tick.CandleWindow {
	iv := q.Interval.Milliseconds()
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	w := tick.CandleWindow{Since: s.since(retention)}
	var cur *candleAgg
	var out []candleAgg
	for i := range s.aggs {
		a := &s.aggs[i]
		if a.start < from || a.start >= to {
			continue
		}
		start := bucketOf(a.start, iv)
		if cur != nil && cur.start == start {
			cur.merge(a)
			continue
		}
		out = append(out, a.clone())
		cur = &out[len(out)-1]
		cur.start = start
	}
	w.Candles = make([]tick.Candle, len(out))
	for i := range out {
		w.Candles[i] = out[i].candle()
	}
	return w
}

// checkCandleQuery refuses what the 1m buckets cannot answer.
func checkCandleQuery(q tick.CandleQuery) error {
	switch {
	case q.Interval <= 0 || q.Interval%candleBucket != 0:
		return fmt.Errorf("cache: candles: interval %s is not a whole number of minutes", q.Interval)
	case !q.From.Before(q.To):
		return fmt.Errorf("cache: candles: from %s is not before to %s", q.From, q.To)
	}
	return nil
}

// The Redis encoding of a bucket: the fields of candleAgg, space
// separated, decimals as the ticks spelled them. The Lua merge reads it
// back field by field.
func (a *candleAgg) encode(b []byte) []byte {
	for i, d := range [...]struct {
		v  *apd.Decimal
		at mark
	}{{&a.open, a.openAt}, {&a.high, a.highAt}, {&a.low, a.lowAt}, {&a.close, a.closeAt}} {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, d.v.Text('f')...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, d.at.ts, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, d.at.recv, 10)
	}
	b = append(b, ' ')
	return strconv.AppendUint(b, a.ticks, 10)
}

func decodeAgg(start int64, s string) (candleAgg, error) {
	f := strings.Fields(s)
	a := candleAgg{start: start}
	if len(f) != 13 {
		return a, fmt.Errorf("bucket %d: %d fields, want 13", start, len(f))
	}
	for i, d := range [...]struct {
		v  *apd.Decimal
		at *mark
	}{{&a.open, &a.openAt}, {&a.high, &a.highAt}, {&a.low, &a.lowAt}, {&a.close, &a.closeAt}} {
		if _, _, err := d.v.SetString(f[3*i]); err != nil {
			return a, fmt.Errorf("bucket %d: price %q: %w", start, f[3*i], err)
		}
		var err1, err2 error
		d.at.ts, err1 = strconv.ParseInt(f[3*i+1], 10, 64)
		d.at.recv, err2 = strconv.ParseInt(f[3*i+2], 10, 64)
		if err1 != nil || err2 != nil {
			return a, fmt.Errorf("bucket %d: bad tick identity %q %q", start, f[3*i+1], f[3*i+2])
		}
	}
	n, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return a, fmt.Errorf("bucket %d: ticks %q: %w", start, f[12], err)
	}
	a.ticks = n
	return a, nil
}
