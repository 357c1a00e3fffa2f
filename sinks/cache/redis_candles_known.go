package cache

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/tick"
)

// The candle script merges a batch into the stored buckets in Lua, and at
// one tick per pair per batch (a slow feed over many pairs) that merge is
// most of what Redis spends on the cache: ~33 µs a call, against ~9 for
// the latest price (docs/PERFORMANCE.md, session 18). So the sink also
// remembers what its last write left in a pair's hash, and while that is
// still what Redis holds it merges in Go and sends the result to a script
// that only checks the watermark and writes.
//
// "Still what Redis holds" is the watermark: a candle write changes any
// bucket only when it counts a tick above the stored watermark, and then
// raises the watermark to that tick's position, which no other write can
// lower. So if the watermark is the one this process set, no other writer
// (another instance after a partition move, a replay elsewhere) has changed
// the hash since, and the buckets this process remembers are the stored
// ones. Otherwise the fast script refuses and the batch goes through the
// merging script, as it did before.

// candleKnown is a pair's candle hash as this process's last write left it.
type candleKnown struct {
	w              pos
	newest, oldest int64 // -1: none
	hasFirst       bool
	// buckets are the stored ones this process knows, ascending by start:
	// those of the newest bucket and the one before it it last wrote.
	buckets []candleAgg
}

// aggAt is the bucket of aggs that starts at start, nil if none does.
func aggAt(aggs []candleAgg, start int64) *candleAgg {
	for i := range aggs {
		if aggs[i].start == start {
			return &aggs[i]
		}
	}
	return nil
}

// candleWrite is what the fast script writes for an update.
type candleWrite struct {
	next            candleKnown
	assumed         pos         // the watermark the merge is for
	hasAggs         bool        // the update counted ticks: newest is written
	buckets         []candleAgg // merged with the stored ones
	delFrom, delTo  int64       // trim [delFrom, delTo) (empty when equal)
	setFirst, setW  bool
	firstBucketTime int64
}

// maxFastBuckets bounds a fast write's buckets (and so its HSET's
// arguments, which Lua's unpack limits); a batch spanning more minutes of
// one pair goes through the merging script.
const maxFastBuckets = 200

// plan merges u, computed against k.w, into what k knows, exactly as the
// candle script would: ok is false when u touches a stored bucket k does
// not hold.
func (k *candleKnown) plan(u *candleUpdate, retentionMS int64) (candleWrite, bool) {
	cw := candleWrite{assumed: k.w, hasAggs: len(u.aggs) > 0,
		next: candleKnown{w: k.w, newest: k.newest, oldest: k.oldest, hasFirst: k.hasFirst}}
	if len(u.aggs) == 0 {
		cw.next.buckets = k.buckets
		return cw, true
	}
	if len(u.aggs) > maxFastBuckets {
		return cw, false
	}
	n := &cw.next
	for i := range u.aggs {
		n.newest = max(n.newest, u.aggs[i].start)
	}
	cut := n.newest - retentionMS
	for i := range u.aggs {
		a := &u.aggs[i]
		if a.start < cut {
			continue
		}
		var m candleAgg
		switch s := aggAt(k.buckets, a.start); {
		case s != nil:
			m = s.clone()
			m.merge(a)
		case a.start <= k.newest:
			return cw, false // stored, perhaps, but not known here
		default:
			m = a.clone()
		}
		cw.buckets = append(cw.buckets, m)
		if n.oldest < 0 || a.start < n.oldest {
			n.oldest = a.start
		}
	}
	if n.oldest >= 0 && n.oldest < cut {
		cw.delFrom, cw.delTo = n.oldest, cut
		n.oldest = cut
	}
	if !k.hasFirst {
		cw.setFirst, cw.firstBucketTime = true, u.aggs[0].start
		n.hasFirst = true
	}
	if k.w.less(u.top) {
		n.w, cw.setW = u.top, true
	}
	// Remember the newest bucket and the one before it: what a batch of a
	// live feed touches.
	keepFrom := max(cut, n.newest-candleBucketMS)
	for _, b := range k.buckets {
		if b.start >= keepFrom && aggAt(cw.buckets, b.start) == nil {
			n.buckets = append(n.buckets, b)
		}
	}
	for _, b := range cw.buckets {
		if b.start >= keepFrom {
			n.buckets = append(n.buckets, b)
		}
	}
	sortAggs(n.buckets)
	return cw, true
}

// sortAggs orders buckets by start.
func sortAggs(a []candleAgg) {
	slices.SortFunc(a, func(x, y candleAgg) int { return cmp.Compare(x.start, y.start) })
}

// candleWriteScript writes what the sink merged, provided the stored
// watermark is the one the merge assumed; else it changes nothing and
// returns {0, stored watermark}.
//
// KEYS[1] candle key. ARGV: expected watermark, watermark after, retention
// ms, trim from, trim to, bucket ms, then field, value pairs (buckets and
// metadata). Returns {1, watermark after} when written.
const candleWriteScript = `
local key = KEYS[1]
local w = redis.call('HGET', key, 'w')
if w ~= ARGV[1] then return {0, w or ''} end
if #ARGV > 6 then redis.call('HSET', key, unpack(ARGV, 7, #ARGV)) end
local from, to, width = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if from < to then
  local dels = {}
  for s = from, to - 1, width do
    dels[#dels + 1] = string.format('%d', s)
    if #dels == 500 then redis.call('HDEL', key, unpack(dels)); dels = {} end
  end
  if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
end
redis.call('PEXPIRE', key, ARGV[3])
return {1, ARGV[2]}
`

var candleWriteSHA = scriptSHA(candleWriteScript)

func formatPos(p pos) string {
	return strconv.FormatInt(p.recv, 10) + " " + strconv.FormatInt(p.ts, 10)
}

// candleWriteCmd is the fast script call for cw.
func (r *redisBackend) candleWriteCmd(p tick.Pair, cw *candleWrite) rueidis.Completed {
	i := strconv.FormatInt
	w := cw.assumed
	after := w
	if cw.setW {
		after = cw.next.w
	}
	args := make([]string, 0, 6+2*len(cw.buckets)+8)
	args = append(args, formatPos(w), formatPos(after), r.retentionMS, i(cw.delFrom, 10), i(cw.delTo, 10), i(candleBucketMS, 10))
	var buf []byte
	for k := range cw.buckets {
		buf = cw.buckets[k].encode(buf[:0])
		args = append(args, i(cw.buckets[k].start, 10), string(buf))
	}
	if cw.hasAggs {
		args = append(args, "newest", i(cw.next.newest, 10))
	}
	if cw.setFirst {
		args = append(args, "first", i(cw.firstBucketTime, 10))
	}
	if cw.next.oldest >= 0 {
		args = append(args, "oldest", i(cw.next.oldest, 10))
	}
	if cw.setW {
		args = append(args, "w", formatPos(after))
	}
	return r.c.B().Evalsha().Sha1(candleWriteSHA).Numkeys(1).Key(candleKey(p)).Arg(args...).Build()
}

// candleFor is g's candle command: the fast write when this process knows
// the pair's stored buckets the update touches (recorded in *plan), else
// the merging script against the assumed watermark.
func (r *redisBackend) candleFor(g *group, plan **candleWrite) rueidis.Completed {
	if k := r.knownCandles(g.pair); k != nil {
		u := candleUpdateFor(g, k.w)
		if cw, ok := k.plan(&u, r.retention); ok {
			*plan = &cw
			return r.candleWriteCmd(g.pair, &cw)
		}
	}
	u := candleUpdateFor(g, r.assumed(g.pair))
	return r.candleCmd(g.pair, &u)
}

// candleDone reads the answer to p's candle command (plan: the fast write
// sent, nil for the merging script) and records what this process now
// knows of the pair's hash.
func (r *redisBackend) candleDone(p tick.Pair, plan *candleWrite, rr rueidis.RedisResult) (applied bool, w pos, err error) {
	applied, w, vs, err := candleResult(rr)
	if err != nil {
		r.setKnown(p, nil)
		return false, noPos, err
	}
	r.setAssumed(p, w)
	switch {
	case !applied:
		r.setKnown(p, nil)
	case plan != nil:
		next := plan.next
		r.setKnown(p, &next)
		r.mergedHere.Inc()
	default:
		k, err := knownFromResult(p, w, vs)
		if err != nil {
			r.setKnown(p, nil)
			return false, noPos, err
		}
		r.setKnown(p, k)
	}
	return applied, w, nil
}

// knownCandles is what this process last left in p's candle hash, nil
// when it does not know.
func (r *redisBackend) knownCandles(p tick.Pair) *candleKnown {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	return r.known[p]
}

// setKnown records k for p (nil: forget).
func (r *redisBackend) setKnown(p tick.Pair, k *candleKnown) {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	if k == nil {
		delete(r.known, p)
		return
	}
	if r.known == nil {
		r.known = map[tick.Pair]*candleKnown{}
	}
	r.known[p] = k
}

// knownFromResult reads the state the merging script returned after
// applying ({1, w, newest, oldest, first?, start, value, ...}).
func knownFromResult(p tick.Pair, w pos, vs []rueidis.RedisMessage) (*candleKnown, error) {
	if len(vs) < 5 || len(vs)%2 == 0 {
		return nil, fmt.Errorf("candle script: %d values, want the state after the write", len(vs))
	}
	var f [3]string
	for k := range f {
		s, err := vs[2+k].ToString()
		if err != nil {
			return nil, err
		}
		f[k] = s
	}
	newest, err1 := strconv.ParseInt(f[0], 10, 64)
	oldest, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%s: candle script state %q %q unreadable", candleKey(p), f[0], f[1])
	}
	k := &candleKnown{w: w, newest: newest, oldest: oldest, hasFirst: f[2] == "1"}
	for j := 5; j+1 < len(vs); j += 2 {
		ss, err := vs[j].ToString()
		if err != nil {
			return nil, err
		}
		v, err := vs[j+1].ToString()
		if err != nil {
			return nil, err
		}
		start, err := strconv.ParseInt(ss, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bucket %q: %w", candleKey(p), ss, err)
		}
		a, err := decodeAgg(start, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", candleKey(p), err)
		}
		k.buckets = append(k.buckets, a)
	}
	sortAggs(k.buckets)
	return k, nil
}
