package cache

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/tick"
)

// A pair's traded volume is one Redis hash beside its candle hash, written
// by the trade runtime with one script call per pair and batch:
//
//	market_data:trade_volume_1m:<exchange>:<symbol>   hash, TTL candle_retention
//	  <bucket start ms>  "<volume> <trades>": the exact decimal sum of the sizes, the count
//	  w                  "recv id id ...": the trade watermark (volume.go)
//	  newest, oldest     the newest bucket; no bucket older than oldest is left
//
// A second key rather than fields of the candle hash: ticks and trades
// are written by two runtimes, and each script trims only its own fields.
const volumePrefix = "market_data:trade_volume_1m:"

func volumeKey(p tick.Pair) string { return volumePrefix + p.Exchange + ":" + p.Symbol }

// A pair's recent trades are a sorted set like its tick history:
//
//	market_data:trades:<exchange>:<symbol>   trade JSON scored by event time (ms),
//	                                         trimmed to the newest `trades`, TTL ttl
const recentTradesPrefix = "market_data:trades:"

func recentTradesKey(p tick.Pair) string { return recentTradesPrefix + p.Exchange + ":" + p.Symbol }

// volumeScript adds one pair's batch of volume buckets, provided it was
// computed against the stored watermark (ARGV[1], compared as the string
// it is stored as); else it changes nothing and returns {0, stored
// watermark}, and the caller computes again. Volumes add as decimal
// strings, digit by digit: a Lua number is a double and would round them.
//
// KEYS[1] volume key. ARGV: watermark computed against, watermark after,
// retention ms, bucket ms, then start, "<volume> <trades>" pairs. Returns
// {1, watermark after} when applied.
var volumeScript = `
local key = KEYS[1]
local function dadd(a, b)
  local ai, af = string.match(a, '^(%d*)%.?(%d*)$')
  local bi, bf = string.match(b, '^(%d*)%.?(%d*)$')
  local n = math.max(#af, #bf)
  af = af .. string.rep('0', n - #af)
  bf = bf .. string.rep('0', n - #bf)
  local m = math.max(#ai, #bi)
  local x = string.rep('0', m - #ai) .. ai .. af
  local y = string.rep('0', m - #bi) .. bi .. bf
  local out, carry = {}, 0
  for i = #x, 1, -1 do
    local d = string.byte(x, i) + string.byte(y, i) - 96 + carry
    if d >= 10 then carry = 1; d = d - 10 else carry = 0 end
    out[#out + 1] = string.char(48 + d)
  end
  if carry > 0 then out[#out + 1] = '1' end
  local s = string.reverse(table.concat(out))
  local ip = (string.gsub(string.sub(s, 1, #s - n), '^0+', ''))
  if ip == '' then ip = '0' end
  if n > 0 then return ip .. '.' .. string.sub(s, #s - n + 1) end
  return ip
end
local function add(cur, new)
  local cv, cn = string.match(cur, '^(%S+) (%d+)$')
  local nv, nn = string.match(new, '^(%S+) (%d+)$')
  if not cv then return new end
  return dadd(cv, nv) .. ' ' .. string.format('%d', tonumber(cn) + tonumber(nn))
end

local st = redis.call('HMGET', key, 'w', 'newest', 'oldest')
local w = st[1] or ''
if w ~= ARGV[1] then return {0, w} end
local ret, width = tonumber(ARGV[3]), tonumber(ARGV[4])
local newest = tonumber(st[2] or '-1')
local oldest = tonumber(st[3] or '-1')
local first, combine = 5, add
` + luaBucketUpsert + `local meta = {'w', ARGV[2]}
if newest >= 0 then meta[#meta + 1] = 'newest'; meta[#meta + 1] = string.format('%d', newest) end
if oldest >= 0 then meta[#meta + 1] = 'oldest'; meta[#meta + 1] = string.format('%d', oldest) end
redis.call('HSET', key, unpack(meta))
redis.call('PEXPIRE', key, ARGV[3])
return {1, ARGV[2]}
`

var volumeSHA = scriptSHA(volumeScript)

func (r *redisBackend) volumeCmd(p tick.Pair, w tradeMark, u *volumeUpdate) rueidis.Completed {
	args := make([]string, 0, 4+2*len(u.aggs))
	args = append(args, w.encode(), u.top.encode(), r.retentionMS, strconv.FormatInt(candleBucketMS, 10))
	for k := range u.aggs {
		args = append(args, strconv.FormatInt(u.aggs[k].start, 10), u.aggs[k].encode())
	}
	return r.c.B().Evalsha().Sha1(volumeSHA).Numkeys(1).Key(volumeKey(p)).Arg(args...).Build()
}

func volumeResult(rr rueidis.RedisResult) (applied bool, w tradeMark, err error) {
	vs, err := rr.ToArray()
	if err != nil {
		return false, noTradeMark, err
	}
	if len(vs) != 2 {
		return false, noTradeMark, fmt.Errorf("volume script: %d values, want 2", len(vs))
	}
	ok, err := vs[0].AsInt64()
	if err != nil {
		return false, noTradeMark, err
	}
	s, err := vs[1].ToString()
	if err != nil {
		return false, noTradeMark, err
	}
	w, err = decodeTradeMark(s)
	return ok == 1, w, err
}

func (r *redisBackend) assumedTrade(p tick.Pair) tradeMark {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	if w, ok := r.twm[p]; ok {
		return w
	}
	return noTradeMark
}

func (r *redisBackend) setAssumedTrade(p tick.Pair, w tradeMark) {
	r.wmMu.Lock()
	defer r.wmMu.Unlock()
	if r.twm == nil {
		r.twm = map[tick.Pair]tradeMark{}
	}
	r.twm[p] = w
}

// writeVolume sends one script call per pair, against the watermark the
// last write left (one round trip for the common batch); pairs whose
// watermark was not that one are computed again against the one Redis
// returned, in one more round trip for all of them.
// writeTrades sends the recent trades' commands and the volume scripts
// in one pipelined round trip (the common batch; see writeVolume).
func (r *redisBackend) writeTrades(ctx context.Context, groups []tradeGroup) (int, error) {
	var recent rueidis.Commands
	if r.tradeCap > 0 {
		recent = r.recentTradesCmds(groups)
	}
	if r.retentionMS == "" {
		for _, rr := range r.c.DoMulti(ctx, recent...) {
			if err := rr.Error(); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	return r.writeVolume(ctx, groups, recent)
}

// recentTradesCmds add the batch to each pair's recent trades: the trade
// JSON scored by event time, trimmed to the newest tradeCap. A
// redelivered trade is the same record, so the same member, and is not
// added twice.
func (r *redisBackend) recentTradesCmds(groups []tradeGroup) rueidis.Commands {
	b := r.c.B()
	cmds := make(rueidis.Commands, 0, 3*len(groups))
	var buf []byte
	for gi := range groups {
		g := &groups[gi]
		k := recentTradesKey(g.pair)
		z := b.Zadd().Key(k).ScoreMember()
		for _, t := range g.trades {
			buf = t.AppendJSON(buf[:0])
			z = z.ScoreMember(float64(t.Timestamp), string(buf))
		}
		cmds = append(cmds, z.Build(),
			b.Zremrangebyrank().Key(k).Start(0).Stop(int64(-r.tradeCap-1)).Build(),
			b.Pexpire().Key(k).Milliseconds(r.ttl.Milliseconds()).Build())
	}
	return cmds
}

// recentTrades is p's newest trades' JSON, newest first.
func (r *redisBackend) recentTrades(ctx context.Context, p tick.Pair, limit int) ([]string, error) {
	return r.c.Do(ctx, r.c.B().Zrange().Key(recentTradesKey(p)).Min("0").Max(strconv.Itoa(limit-1)).Rev().Build()).AsStrSlice()
}

func (r *redisBackend) writeVolume(ctx context.Context, groups []tradeGroup, first rueidis.Commands) (int, error) {
	marks := make(map[int]tradeMark, len(groups))
	for gi := range groups {
		marks[gi] = r.assumedTrade(groups[gi].pair)
	}
	dups, reloaded := 0, false
	for try := 0; len(marks) > 0; try++ {
		if try >= maxCandleTries {
			return dups, fmt.Errorf("volume: %d pairs' watermark kept moving during the write", len(marks))
		}
		if try > 0 {
			r.recomputed.Add(float64(len(marks)))
		}
		idx := make([]int, 0, len(marks))
		ups := make([]volumeUpdate, 0, len(marks))
		// first goes with the first try only, ahead of the scripts.
		cmds := make(rueidis.Commands, 0, len(first)+len(marks))
		cmds = append(cmds, first...)
		for gi, w := range marks {
			u, err := volumeUpdateFor(&groups[gi], w)
			if err != nil {
				return dups, err
			}
			idx, ups = append(idx, gi), append(ups, u)
			cmds = append(cmds, r.volumeCmd(groups[gi].pair, w, &u))
		}
		next := map[int]tradeMark{}
		noScript := false
		var firstErr error
		res := r.c.DoMulti(ctx, cmds...)
		for _, rr := range res[:len(first)] {
			if err := rr.Error(); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		first = nil
		for k, rr := range res[len(cmds)-len(idx):] {
			applied, w, err := volumeResult(rr)
			switch {
			case err != nil && isNoScript(err):
				noScript = true
				next[idx[k]] = marks[idx[k]]
				continue
			case err != nil:
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			r.setAssumedTrade(groups[idx[k]].pair, w)
			if applied {
				dups += ups[k].dups
			} else {
				next[idx[k]] = w
			}
		}
		if firstErr != nil {
			return dups, firstErr
		}
		if noScript {
			if reloaded {
				return dups, errors.New("volume script missing right after loading it")
			}
			if err := r.loadScript(ctx); err != nil {
				return dups, fmt.Errorf("reload scripts: %w", err)
			}
			reloaded, try = true, try-1
		}
		marks = next
	}
	return dups, nil
}

// volumes reads p's volume buckets, ascending by start.
func decodeVolumes(p tick.Pair, m map[string]string) ([]volAgg, error) {
	var out []volAgg
	for f, v := range m {
		start, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			continue // w, newest, oldest, or not ours
		}
		a, err := decodeVolAgg(start, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", volumeKey(p), err)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return out, nil
}
