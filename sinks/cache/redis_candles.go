package cache

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/tick"
)

// The candles of a pair are one Redis hash, so a batch updates them with
// one script call on one key (one slot in a cluster, whatever the other
// keys' slots):
//
//	market_data:candles_1m:<exchange>:<symbol>   hash, TTL candle_retention
//	  <bucket start ms>  "open ts recv high ts recv low ts recv close ts recv ticks"
//	  w                  "recv ts": the watermark (see candles.go)
//	  first              the bucket of the first tick counted
//	  newest             the newest bucket
//	  oldest             no bucket older than this is left (for trimming)
const candlePrefix = "market_data:candles_1m:"

func candleKey(p tick.Pair) string { return candlePrefix + p.Exchange + ":" + p.Symbol }

// candleScript merges one pair's batch of 1m buckets, provided it was
// computed against the stored watermark (else it changes nothing and
// returns {0, stored watermark}, and the caller computes again). Prices
// compare as decimals, in Lua, digit by digit: they are positive plain
// decimals (tick.Validate, Text('f')), and a float would round them.
//
// KEYS[1] candle key. ARGV: lo recv, lo ts, skipped recv, skipped ts,
// top recv, top ts, retention ms, bucket ms, then start, encoded bucket
// pairs. Returns {1, watermark after} when applied.
var candleScript = `
local key = KEYS[1]
local function plt(ar, at, br, bt) return ar < br or (ar == br and at < bt) end
local function dcmp(a, b)
  local ai, af = string.match(a, '^0*(%d*)%.?(%d*)$')
  local bi, bf = string.match(b, '^0*(%d*)%.?(%d*)$')
  if #ai ~= #bi then if #ai < #bi then return -1 end return 1 end
  if ai ~= bi then if ai < bi then return -1 end return 1 end
  af = (string.gsub(af, '0+$', ''))
  bf = (string.gsub(bf, '0+$', ''))
  if af == bf then return 0 end
  if af < bf then return -1 end
  return 1
end
local function fields(s)
  local t = {}
  for x in string.gmatch(s, '%S+') do t[#t + 1] = x end
  return t
end
local function before(a, b, i)
  local x, y = tonumber(a[i + 1]), tonumber(b[i + 1])
  if x ~= y then return x < y end
  return tonumber(a[i + 2]) < tonumber(b[i + 2])
end
local function take(a, b, i) a[i], a[i + 1], a[i + 2] = b[i], b[i + 1], b[i + 2] end
local function merge(cs, ns)
  local a, b = fields(cs), fields(ns)
  if #a ~= 13 then return ns end
  if before(b, a, 1) then take(a, b, 1) end
  local c = dcmp(b[4], a[4])
  if c > 0 or (c == 0 and before(b, a, 4)) then take(a, b, 4) end
  c = dcmp(b[7], a[7])
  if c < 0 or (c == 0 and before(b, a, 7)) then take(a, b, 7) end
  if before(a, b, 10) then take(a, b, 10) end
  a[13] = string.format('%d', tonumber(a[13]) + tonumber(b[13]))
  return table.concat(a, ' ')
end

local st = redis.call('HMGET', key, 'w', 'newest', 'oldest', 'first')
local w = st[1]
local wr, wt = -1, -1
if w then
  local r, t = string.match(w, '^(%-?%d+) (%-?%d+)$')
  if r then wr, wt = tonumber(r), tonumber(t) end
end
if plt(wr, wt, tonumber(ARGV[3]), tonumber(ARGV[4])) or not plt(wr, wt, tonumber(ARGV[1]), tonumber(ARGV[2])) then
  return {0, w or ''}
end
local ret, width = tonumber(ARGV[7]), tonumber(ARGV[8])
local newest = tonumber(st[2] or '-1')
local oldest = tonumber(st[3] or '-1')
local first, combine = 9, merge
` + luaBucketUpsert + `local meta = {}
if #ARGV >= 9 then
  if not st[4] then meta[#meta + 1] = 'first'; meta[#meta + 1] = ARGV[9] end
  meta[#meta + 1] = 'newest'; meta[#meta + 1] = string.format('%d', newest)
end
if oldest >= 0 then meta[#meta + 1] = 'oldest'; meta[#meta + 1] = string.format('%d', oldest) end
local tr, tt = tonumber(ARGV[5]), tonumber(ARGV[6])
if plt(wr, wt, tr, tt) then
  w = ARGV[5] .. ' ' .. ARGV[6]
  meta[#meta + 1] = 'w'; meta[#meta + 1] = w
end
if #meta > 0 then redis.call('HSET', key, unpack(meta)) end
redis.call('PEXPIRE', key, ARGV[7])
local out = {1, w or '', string.format('%d', newest), string.format('%d', oldest), '0'}
if st[4] or #ARGV >= 9 then out[5] = '1' end
for k = 1, #keep do out[#out + 1] = keep[k] end
return out
`

var candleSHA = scriptSHA(candleScript)

// candleCmd is the script call for u.
func (r *redisBackend) candleCmd(p tick.Pair, u *candleUpdate) rueidis.Completed {
	i := strconv.FormatInt
	args := make([]string, 0, 8+2*len(u.aggs))
	args = append(args, i(u.lo.recv, 10), i(u.lo.ts, 10), i(u.skipped.recv, 10), i(u.skipped.ts, 10),
		i(u.top.recv, 10), i(u.top.ts, 10), r.retentionMS, strconv.FormatInt(candleBucketMS, 10))
	var buf []byte
	for k := range u.aggs {
		buf = u.aggs[k].encode(buf[:0])
		args = append(args, i(u.aggs[k].start, 10), string(buf))
	}
	return r.c.B().Evalsha().Sha1(candleSHA).Numkeys(1).Key(candleKey(p)).Arg(args...).Build()
}

// candleResult reads a candle script's answer: applied, the stored
// watermark (after the update when applied), and the values after those
// two (the merging script's state after the write).
func candleResult(rr rueidis.RedisResult) (applied bool, w pos, vs []rueidis.RedisMessage, err error) {
	vs, err = rr.ToArray()
	if err != nil {
		return false, noPos, nil, err
	}
	if len(vs) < 2 {
		return false, noPos, nil, fmt.Errorf("candle script: %d values, want at least 2", len(vs))
	}
	ok, err := vs[0].AsInt64()
	if err != nil {
		return false, noPos, nil, err
	}
	s, err := vs[1].ToString()
	if err != nil {
		return false, noPos, nil, err
	}
	w = noPos
	if s != "" {
		a, b, _ := strings.Cut(s, " ")
		recv, err1 := strconv.ParseInt(a, 10, 64)
		ts, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil {
			return false, noPos, nil, fmt.Errorf("candle watermark %q unreadable", s)
		}
		w = pos{recv, ts}
	}
	return ok == 1, w, vs, nil
}

// assumed is the watermark the last write saw for p, noPos when unknown.
// Guessing it lets the common batch (everything new) go in the batch's
// one round trip; a wrong guess costs one more for that pair.
func (r *redisBackend) assumed(p tick.Pair) pos {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	if w, ok := r.wm[p]; ok {
		return w
	}
	return noPos
}

func (r *redisBackend) setAssumed(p tick.Pair, w pos) {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	if r.wm == nil {
		r.wm = map[tick.Pair]pos{}
	}
	r.wm[p] = w
}

// maxCandleTries bounds how often one batch recomputes a pair's update:
// a second try uses the watermark Redis returned, so only another writer
// racing on the same pair can need a third.
const maxCandleTries = 3

// retryCandles recomputes and resends the updates Redis refused, against
// the watermarks it returned.
func (r *redisBackend) retryCandles(ctx context.Context, groups []group, refused map[int]pos) error {
	for try := 1; len(refused) > 0; try++ {
		if try >= maxCandleTries {
			return fmt.Errorf("candles: %d pairs' watermark kept moving during the write", len(refused))
		}
		r.recomputed.Add(float64(len(refused)))
		idx := make([]int, 0, len(refused))
		cmds := make(rueidis.Commands, 0, len(refused))
		for gi, w := range refused {
			u := candleUpdateFor(&groups[gi], w)
			idx = append(idx, gi)
			cmds = append(cmds, r.candleCmd(groups[gi].pair, &u))
		}
		next := map[int]pos{}
		for k, rr := range r.c.DoMulti(ctx, cmds...) {
			applied, w, err := r.candleDone(groups[idx[k]].pair, nil, rr)
			if err != nil {
				return err
			}
			if !applied {
				next[idx[k]] = w
			}
		}
		refused = next
	}
	return nil
}

func (r *redisBackend) candles(ctx context.Context, p tick.Pair) (candleState, error) {
	if r.retentionMS == "" {
		return candleState{}, nil
	}
	// One round trip for both hashes (two slots in a cluster: rueidis
	// sends each to its node).
	res := r.c.DoMulti(ctx, r.c.B().Hgetall().Key(candleKey(p)).Build(), r.c.B().Hgetall().Key(volumeKey(p)).Build())
	m, err := res[0].AsStrMap()
	if err != nil {
		return candleState{}, err
	}
	vm, err := res[1].AsStrMap()
	if err != nil {
		return candleState{}, err
	}
	vols, err := decodeVolumes(p, vm)
	if err != nil {
		return candleState{}, err
	}
	var st candleState
	for f, v := range m {
		switch f {
		case "w", "oldest":
			continue
		case "first", "newest":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return candleState{}, fmt.Errorf("%s: %s %q: %w", candleKey(p), f, v, err)
			}
			if f == "first" {
				st.first = n
			} else {
				st.newest = n
			}
			continue
		}
		start, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue // not ours; ignore rather than fail the chart
		}
		a, err := decodeAgg(start, v)
		if err != nil {
			return candleState{}, fmt.Errorf("%s: %w", candleKey(p), err)
		}
		st.aggs = append(st.aggs, a)
	}
	sortAggs(st.aggs)
	attachVolume(st.aggs, vols)
	return st, nil
}

// luaBucketUpsert is the part of the candle and volume scripts that is the
// same: it combines each retained bucket of the update (ARGV pairs of start
// and value from index first) into the pair's hash, read and written in
// chunks of 250 (one call each; unpack has a stack limit), and drops
// buckets older than the retention. It leaves in keep the start and stored
// value of each bucket it wrote that is at most one bucket older than the
// newest (the candle script returns them). The script before it defines
// key, ret, width, newest, oldest, first and combine(cur, new).
const luaBucketUpsert = `for i = first, #ARGV, 2 do
  local start = tonumber(ARGV[i])
  if start > newest then newest = start end
end
local cut = newest - ret
local idx, keep = {}, {}
for i = first, #ARGV, 2 do
  if tonumber(ARGV[i]) >= cut then idx[#idx + 1] = i end
end
for c = 1, #idx, 250 do
  local names, sets = {}, {}
  for k = c, math.min(c + 249, #idx) do names[#names + 1] = ARGV[idx[k]] end
  local curs = redis.call('HMGET', key, unpack(names))
  for k = c, math.min(c + 249, #idx) do
    local i, cur = idx[k], curs[k - c + 1]
    local v = ARGV[i + 1]
    if cur then v = combine(cur, v) end
    sets[#sets + 1] = ARGV[i]
    sets[#sets + 1] = v
    local start = tonumber(ARGV[i])
    if start >= newest - width then keep[#keep + 1] = ARGV[i]; keep[#keep + 1] = v end
    if oldest < 0 or start < oldest then oldest = start end
  end
  redis.call('HSET', key, unpack(sets))
end
if oldest >= 0 and oldest < cut then
  local dels = {}
  for s = oldest, cut - 1, width do
    dels[#dels + 1] = string.format('%d', s)
    if #dels == 500 then redis.call('HDEL', key, unpack(dels)); dels = {} end
  end
  if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
  oldest = cut
end
`
