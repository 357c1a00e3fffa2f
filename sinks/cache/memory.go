package cache

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/tick"
)

// memory is the in-process backend. It mirrors the Redis backend's
// semantics exactly (ordering of equal scores, trimming, expiry), so the
// API behaves the same whichever is configured.
type memory struct {
	clk       clock.Clock
	ttl       time.Duration
	cap       int
	retention time.Duration // candles; 0: none
	tradeCap  int           // recent trades kept per pair; 0: none

	mu        sync.RWMutex
	byPair    map[tick.Pair]*memPair
	nextSweep time.Time
}

type memPair struct {
	latest    tick.Tick
	latestExp time.Time
	hasLatest bool
	hist      []memEntry // ascending by (ts, member), like a Redis sorted set
	histExp   time.Time
	candles   memCandles
	vol       memVolume
	trades    []memEntry // the recent trades' JSON by event time, like history
	tradesExp time.Time
}

// memVolume is the Redis volume hash's content (see redis_volume.go).
type memVolume struct {
	aggs   []volAgg // ascending by start
	w      tradeMark
	newest int64
	exp    time.Time
}

func (mv *memVolume) live(now time.Time) bool { return now.Before(mv.exp) }

// apply is the volume script's merge: u was computed for mv.w, which
// holding the lock guarantees.
func (mv *memVolume) apply(u *volumeUpdate, retention time.Duration, now time.Time) {
	for i := range u.aggs {
		mv.newest = max(mv.newest, u.aggs[i].start)
	}
	cutAt := mv.newest - retention.Milliseconds()
	for i := range u.aggs {
		a := &u.aggs[i]
		if a.start < cutAt {
			continue
		}
		j := sort.Search(len(mv.aggs), func(k int) bool { return mv.aggs[k].start >= a.start })
		if j < len(mv.aggs) && mv.aggs[j].start == a.start {
			_, _ = apd.BaseContext.Add(&mv.aggs[j].volume, &mv.aggs[j].volume, &a.volume)
			mv.aggs[j].trades += a.trades
			continue
		}
		mv.aggs = slices.Insert(mv.aggs, j, volAgg{start: a.start, trades: a.trades})
		mv.aggs[j].volume.Set(&a.volume)
	}
	cut := sort.Search(len(mv.aggs), func(k int) bool { return mv.aggs[k].start >= cutAt })
	if cut > 0 {
		mv.aggs = append(mv.aggs[:0:0], mv.aggs[cut:]...)
	}
	mv.w = u.top
	mv.exp = now.Add(retention)
}

func (m *memory) writeTrades(_ context.Context, groups []tradeGroup) (int, error) {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	dups := 0
	for gi := range groups {
		g := &groups[gi]
		mp := m.byPair[g.pair]
		if mp == nil {
			mp = &memPair{}
			m.byPair[g.pair] = mp
		}
		if m.tradeCap > 0 {
			if !now.Before(mp.tradesExp) {
				mp.trades = nil
			}
			add := make([]memEntry, len(g.trades))
			for i, t := range g.trades {
				add[i] = memEntry{ts: t.Timestamp, member: string(t.AppendJSON(nil))}
			}
			mergeEntries(&mp.trades, add, m.tradeCap)
			mp.tradesExp = now.Add(m.ttl)
		}
		if m.retention == 0 {
			continue
		}
		if !mp.vol.live(now) {
			mp.vol = memVolume{w: noTradeMark}
		}
		u, err := volumeUpdateFor(g, mp.vol.w)
		if err != nil {
			return dups, err
		}
		mp.vol.apply(&u, m.retention, now)
		dups += u.dups
	}
	return dups, nil
}

// memCandles is the Redis candle hash's content (see redis.go).
type memCandles struct {
	aggs          []candleAgg // ascending by start
	w             pos         // the watermark; noPos before the first tick
	first, newest int64
	exp           time.Time
}

func (mc *memCandles) live(now time.Time) bool { return now.Before(mc.exp) }

// apply is the candle script's merge: u must have been computed for
// mc.w, which holding the lock guarantees.
func (mc *memCandles) apply(u *candleUpdate, retention time.Duration, now time.Time) {
	if mc.first == 0 && len(u.aggs) > 0 {
		mc.first = u.aggs[0].start
	}
	for i := range u.aggs {
		a := &u.aggs[i]
		mc.newest = max(mc.newest, a.start)
		if a.start < mc.newest-retention.Milliseconds() {
			continue // older than the retained window
		}
		j := sort.Search(len(mc.aggs), func(k int) bool { return mc.aggs[k].start >= a.start })
		if j < len(mc.aggs) && mc.aggs[j].start == a.start {
			mc.aggs[j].merge(a)
			continue
		}
		mc.aggs = append(mc.aggs, candleAgg{})
		copy(mc.aggs[j+1:], mc.aggs[j:])
		mc.aggs[j] = a.clone()
	}
	cut := sort.Search(len(mc.aggs), func(k int) bool { return mc.aggs[k].start >= mc.newest-retention.Milliseconds() })
	if cut > 0 {
		mc.aggs = append(mc.aggs[:0:0], mc.aggs[cut:]...)
	}
	if mc.w.less(u.top) {
		mc.w = u.top
	}
	mc.exp = now.Add(retention)
}

// memEntry is a history member: like Redis, the history keeps the JSON
// and decodes it on read, which keeps entries small enough to merge a
// batch in cheaply.
type memEntry struct {
	ts     int64
	member string
}

func (a memEntry) less(b memEntry) bool {
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return a.member < b.member
}

func newMemory(clk clock.Clock, cfg Config) *memory {
	return &memory{clk: clk, ttl: cfg.TTL, cap: cfg.History, retention: cfg.CandleRetention, tradeCap: cfg.Trades, byPair: map[tick.Pair]*memPair{}}
}

func (mp *memPair) latestLive(now time.Time) bool { return mp.hasLatest && now.Before(mp.latestExp) }
func (mp *memPair) histLive(now time.Time) bool   { return len(mp.hist) > 0 && now.Before(mp.histExp) }

func (m *memory) write(_ context.Context, groups []group) (int, error) {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	stale := 0
	for gi := range groups {
		g := &groups[gi]
		mp := m.byPair[g.pair]
		if mp == nil {
			mp = &memPair{}
			m.byPair[g.pair] = mp
		}
		if !mp.setLatest(g.entries[g.newest].t, now, m.ttl) {
			stale++
		}
		if !mp.histLive(now) {
			mp.hist = nil
		}
		mp.merge(g.entries, m.cap)
		mp.histExp = now.Add(m.ttl)
		if m.retention > 0 {
			if !mp.candles.live(now) {
				// Expired as a whole, like the Redis hash with its
				// watermark: what comes now is counted afresh.
				mp.candles = memCandles{w: noPos}
			}
			u := candleUpdateFor(g, mp.candles.w)
			mp.candles.apply(&u, m.retention, now)
		}
	}
	return stale, nil
}

// setLatest is the Lua script's rule: replace only with a strictly newer
// event time; the TTL is renewed only when the value changes.
func (mp *memPair) setLatest(t *tick.Tick, now time.Time, ttl time.Duration) bool {
	if mp.latestLive(now) && mp.latest.Timestamp >= t.Timestamp {
		return false
	}
	mp.latest, mp.hasLatest, mp.latestExp = cloneTick(t), true, now.Add(ttl)
	return true
}

// cloneTick deep-copies t: an apd.Decimal copied by assignment may share
// its coefficient's storage with the caller's, whose batch buffer is
// reused.
func cloneTick(t *tick.Tick) tick.Tick {
	c := *t
	for _, p := range [...]struct{ dst, src *apd.Decimal }{
		{&c.Price, &t.Price}, {&c.Volume, &t.Volume}, {&c.Bid, &t.Bid}, {&c.Ask, &t.Ask},
		{&c.Open24h, &t.Open24h}, {&c.High24h, &t.High24h}, {&c.Low24h, &t.Low24h}, {&c.QuoteVolume, &t.QuoteVolume},
	} {
		*p.dst = apd.Decimal{}
		p.dst.Set(p.src)
	}
	return c
}

// merge is ZADD then ZREMRANGEBYRANK 0 -(cap+1): the batch's ticks join
// the history (a member already there is not added twice) and only the
// newest cap stay.
func (mp *memPair) merge(entries []entry, capacity int) {
	add := make([]memEntry, len(entries))
	for i, e := range entries {
		add[i] = memEntry{ts: e.t.Timestamp, member: e.json}
	}
	mergeEntries(&mp.hist, add, capacity)
}

// mergeEntries is merge for any sorted set of members (ticks, trades).
func mergeEntries(hist *[]memEntry, add []memEntry, capacity int) {
	sort.Slice(add, func(i, j int) bool { return add[i].less(add[j]) })
	h := *hist
	defer func() { *hist = h }()
	if n := len(h); n == 0 || h[n-1].less(add[0]) {
		// The usual case, a live feed: everything is newer than the
		// history, so append in place (amortised, no copy of the
		// history per batch) and cut the oldest.
		for _, e := range add {
			if n := len(h); n > 0 && h[n-1] == e {
				continue
			}
			h = append(h, e)
		}
		if over := len(h) - capacity; over > 0 {
			clear(h[:over]) // release the members' strings
			h = h[over:]
		}
		return
	}
	out := make([]memEntry, 0, len(h)+len(add))
	i, j := 0, 0
	for i < len(h) || j < len(add) {
		var next memEntry
		switch {
		case j == len(add) || (i < len(h) && h[i].less(add[j])):
			next = h[i]
			i++
		default:
			next = add[j]
			j++
		}
		if n := len(out); n > 0 && out[n-1] == next {
			continue
		}
		out = append(out, next)
	}
	if over := len(out) - capacity; over > 0 {
		out = out[over:]
	}
	h = out
}

// sweep drops pairs whose keys have all expired, at most once per TTL, so
// memory stays bounded by the live pairs.
func (m *memory) sweep(now time.Time) {
	if now.Before(m.nextSweep) {
		return
	}
	m.nextSweep = now.Add(m.ttl)
	for p, mp := range m.byPair {
		if !mp.latestLive(now) && !mp.histLive(now) && !mp.candles.live(now) && !mp.vol.live(now) && !now.Before(mp.tradesExp) {
			delete(m.byPair, p)
		}
	}
}

func (m *memory) latest(_ context.Context, p tick.Pair) (tick.Tick, bool, error) {
	now := m.clk.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mp := m.byPair[p]
	if mp == nil || !mp.latestLive(now) {
		return tick.Tick{}, false, nil
	}
	return mp.latest, true, nil
}

func (m *memory) history(_ context.Context, q tick.Query) (tick.Window, error) {
	now := m.clk.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mp := m.byPair[tick.Pair{Exchange: q.Exchange, Symbol: q.Symbol}]
	if mp == nil || !mp.histLive(now) {
		return tick.Window{}, nil
	}
	since := coverageStart(mp.hist[0].ts, len(mp.hist), m.cap)
	lo, hi := scoreBounds(q)
	lo = max(lo, since)
	var out []tick.Tick
	for i := len(mp.hist) - 1; i >= 0 && len(out) < q.Limit; i-- {
		e := &mp.hist[i]
		if e.ts > hi {
			continue
		}
		if e.ts < lo {
			break
		}
		var t tick.Tick
		if err := tick.Unmarshal([]byte(e.member), &t); err != nil {
			return tick.Window{}, fmt.Errorf("memory history of %s:%s: %w", q.Exchange, q.Symbol, err)
		}
		out = append(out, t)
	}
	return tick.Window{Ticks: out, Since: since}, nil
}

func (m *memory) putLatest(_ context.Context, t *tick.Tick, _ []byte) error {
	now := m.clk.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	mp := m.byPair[t.Pair()]
	if mp == nil {
		mp = &memPair{}
		m.byPair[t.Pair()] = mp
	}
	mp.setLatest(t, now, m.ttl)
	return nil
}

func (m *memory) pairs(_ context.Context) ([]tick.Tick, error) {
	now := m.clk.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]tick.Tick, 0, len(m.byPair))
	for _, mp := range m.byPair {
		if mp.latestLive(now) {
			out = append(out, mp.latest)
		}
	}
	sortPairs(out)
	return out, nil
}

func (m *memory) candles(_ context.Context, p tick.Pair) (candleState, error) {
	now := m.clk.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mp := m.byPair[p]
	if mp == nil || !mp.candles.live(now) {
		return candleState{}, nil
	}
	mc := &mp.candles
	// A copy: the caller merges from it after the lock is released.
	st := candleState{aggs: make([]candleAgg, len(mc.aggs)), first: mc.first, newest: mc.newest}
	for i := range mc.aggs {
		st.aggs[i] = mc.aggs[i].clone()
	}
	if mp.vol.live(now) {
		attachVolume(st.aggs, mp.vol.aggs)
	}
	return st, nil
}

func (m *memory) recentTrades(_ context.Context, p tick.Pair, limit int) ([]string, error) {
	now := m.clk.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	mp := m.byPair[p]
	if mp == nil || !now.Before(mp.tradesExp) {
		return nil, nil
	}
	out := make([]string, 0, min(limit, len(mp.trades)))
	for i := len(mp.trades) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, mp.trades[i].member)
	}
	return out, nil
}

func (m *memory) ping(context.Context) error { return nil }
func (m *memory) close()                     {}

// sortPairs orders by exchange then symbol, so both backends list pairs
// the same way.
func sortPairs(ts []tick.Tick) {
	sort.Slice(ts, func(i, j int) bool {
		if c := strings.Compare(ts[i].Exchange, ts[j].Exchange); c != 0 {
			return c < 0
		}
		return ts[i].Symbol < ts[j].Symbol
	})
}

// coverageStart is CachedTicks.Since for a history whose oldest member has
// event time oldest: everything from there on is held, unless the set is
// full, when trimming may have cut among ticks sharing that time.
func coverageStart(oldest int64, n, capacity int) int64 {
	if n >= capacity {
		return oldest + 1
	}
	return oldest
}

// scoreBounds turns a query into an inclusive event-time range.
func scoreBounds(q tick.Query) (lo, hi int64) {
	lo, hi = minScore, maxScore
	if !q.From.IsZero() {
		lo = q.From.UnixMilli()
	}
	if !q.To.IsZero() {
		hi = q.To.UnixMilli()
	}
	if q.Before != 0 && q.Before-1 < hi {
		hi = q.Before - 1
	}
	return lo, hi
}

// Event times are Unix ms: positive and far below 2^53, so they are exact
// as Redis scores (float64).
const (
	minScore int64 = 0
	maxScore int64 = 1 << 53
)
