package cache

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/tick"
)

// latestScript sets the latest key only when the incoming event time is
// strictly newer than the stored tick's, so replays and out-of-order ticks
// never move it backwards. It reads the stored timestamp with a pattern
// rather than cjson: tick JSON is written by tick.AppendJSON only, and a
// value without a readable timestamp is treated as older and replaced.
//
// KEYS[1] latest key; ARGV[1] event time ms, ARGV[2] tick JSON, ARGV[3] TTL ms.
// Returns 1 when set, 0 when a newer or equal tick was already there.
const latestScript = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ts = tonumber(string.match(cur, '"timestamp":(%-?%d+)'))
  if ts and ts >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`

var latestSHA = scriptSHA(latestScript)

// scriptSHA is the name EVALSHA knows script s by.
func scriptSHA(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

type redisBackend struct {
	c        rueidis.Client
	ttl      time.Duration
	ttlMS    string
	cap      int
	cacheTTL time.Duration
	log      *slog.Logger
	script   *rueidis.Lua
	now      func() time.Time
	// retentionMS is candle_retention in ms, "" when candles are off.
	retentionMS string
	retention   int64 // the same, as a number
	// tradeCap is how many recent trades a pair keeps (0: none).
	tradeCap int

	wmMu       sync.Mutex
	wm         map[tick.Pair]pos // see assumed
	known      map[tick.Pair]*candleKnown
	twm        map[tick.Pair]tradeMark
	recomputed prometheus.Counter
	mergedHere prometheus.Counter
}

func dialRedis(ctx context.Context, cfg Config, log *slog.Logger, recomputed, mergedHere prometheus.Counter) (*redisBackend, error) {
	opt := rueidis.ClientOption{
		InitAddress: cfg.Redis.Addrs,
		Password:    cfg.Redis.Password,
		SelectDB:    cfg.Redis.DB,
		// A hung server must fail a batch in seconds so the runtime's
		// retry and /readyz see it.
		ConnWriteTimeout: 5 * time.Second,
		// Fail fast instead of retrying reads inside rueidis: the API
		// falls back to the store, and the runtime retries batches.
		DisableRetry: true,
		DisableCache: cfg.Redis.ClientCacheTTL == 0,
	}
	c, err := rueidis.NewClient(opt)
	if errors.Is(err, rueidis.ErrNoCache) {
		// RESP2-only server: no client-side caching, reads go to Redis.
		log.Warn("cache: redis does not support client-side caching (RESP3); reads will not be cached in process")
		opt.DisableCache = true
		c, err = rueidis.NewClient(opt)
	}
	if err != nil {
		return nil, err
	}
	log.Info("cache: connected to redis", "addrs", cfg.Redis.Addrs, "mode", c.Mode())
	r := &redisBackend{
		c:          c,
		ttl:        cfg.TTL,
		ttlMS:      strconv.FormatInt(cfg.TTL.Milliseconds(), 10),
		cap:        cfg.History,
		cacheTTL:   cfg.Redis.ClientCacheTTL,
		log:        log,
		script:     rueidis.NewLuaScript(latestScript),
		now:        time.Now,
		recomputed: recomputed, mergedHere: mergedHere,
		tradeCap: cfg.Trades,
	}
	if cfg.CandleRetention > 0 {
		r.retention = cfg.CandleRetention.Milliseconds()
		r.retentionMS = strconv.FormatInt(r.retention, 10)
	}
	if err := r.loadScript(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("load scripts: %w", err)
	}
	return r, nil
}

// loadScript loads the latest and candle scripts on every node, so
// batches can use EVALSHA inside their pipeline.
func (r *redisBackend) loadScript(ctx context.Context) error {
	for addr, n := range r.c.Nodes() {
		for _, s := range [...]string{latestScript, candleScript, candleWriteScript, volumeScript} {
			if err := n.Do(ctx, n.B().ScriptLoad().Script(s).Build()).Error(); err != nil {
				return fmt.Errorf("%s: %w", addr, err)
			}
		}
	}
	return nil
}

func (r *redisBackend) write(ctx context.Context, groups []group) (int, error) {
	stale, noScript, err := r.writeOnce(ctx, groups)
	if err != nil || !noScript {
		return stale, err
	}
	return r.writeAgain(ctx, groups)
}

func (r *redisBackend) writeAgain(ctx context.Context, groups []group) (int, error) {
	// The server lost its scripts (restart without persistence, SCRIPT
	// FLUSH, failover): load again and replay the batch, which is
	// idempotent.
	if err := r.loadScript(ctx); err != nil {
		return 0, fmt.Errorf("reload scripts: %w", err)
	}
	stale, noScript, err := r.writeOnce(ctx, groups)
	if err == nil && noScript {
		err = errors.New("scripts missing right after loading them")
	}
	return stale, err
}

// writeOnce sends the batch as one pipeline. err is the first failure
// other than NOSCRIPT, which is reported through noScript instead. A
// pair whose candle update was computed against a watermark Redis no
// longer holds is sent again, in one more round trip for all such pairs.
func (r *redisBackend) writeOnce(ctx context.Context, groups []group) (stale int, noScript bool, err error) {
	b := r.c.B()
	perPair := cmdsPerPair
	if r.retentionMS != "" {
		perPair++
	}
	cmds := make(rueidis.Commands, 0, perPair*len(groups)+3)
	var plans []*candleWrite // per group: the fast write sent, nil for the merging script
	if r.retentionMS != "" {
		plans = make([]*candleWrite, len(groups))
	}
	for gi := range groups {
		g := &groups[gi]
		n := g.entries[g.newest]
		hk := historyKey(g.pair)
		z := b.Zadd().Key(hk).ScoreMember()
		for _, e := range g.entries {
			z = z.ScoreMember(float64(e.t.Timestamp), e.json)
		}
		cmds = append(cmds,
			b.Evalsha().Sha1(latestSHA).Numkeys(1).Key(tickKey(g.pair)).
				Arg(strconv.FormatInt(n.t.Timestamp, 10), n.json, r.ttlMS).Build(),
			z.Build(),
			b.Zremrangebyrank().Key(hk).Start(0).Stop(int64(-r.cap-1)).Build(),
			b.Pexpire().Key(hk).Milliseconds(r.ttl.Milliseconds()).Build())
		if r.retentionMS != "" {
			cmds = append(cmds, r.candleFor(g, &plans[gi]))
		}
	}
	now := r.now().UnixMilli()
	pz := b.Zadd().Key(pairsKey).Gt().ScoreMember()
	for gi := range groups {
		pz = pz.ScoreMember(float64(now), groups[gi].pair.String())
	}
	cmds = append(cmds,
		pz.Build(),
		// A pair not written for a whole TTL has expired keys: drop it
		// from the index so the index stays bounded.
		b.Zremrangebyscore().Key(pairsKey).Min("-inf").Max("("+strconv.FormatInt(now-r.ttl.Milliseconds(), 10)).Build(),
		b.Pexpire().Key(pairsKey).Milliseconds(r.ttl.Milliseconds()).Build())

	var refused map[int]pos
	for i, rr := range r.c.DoMulti(ctx, cmds...) {
		e := rr.Error()
		inPairs := i < perPair*len(groups)
		isLatest := inPairs && i%perPair == 0
		isCandle := inPairs && i%perPair == cmdsPerPair
		if isCandle && e != nil {
			// Applied or not, this process no longer knows.
			r.setKnown(groups[i/perPair].pair, nil)
		}
		switch {
		case e == nil && isLatest:
			if v, _ := rr.AsInt64(); v == 0 {
				stale++
			}
		case e == nil && isCandle:
			applied, w, cerr := r.candleDone(groups[i/perPair].pair, plans[i/perPair], rr)
			if cerr != nil {
				if err == nil {
					err = cerr
				}
				continue
			}
			if !applied {
				if refused == nil {
					refused = map[int]pos{}
				}
				refused[i/perPair] = w
			}
		case e == nil:
		case (isLatest || isCandle) && isNoScript(e):
			noScript = true
		case err == nil:
			err = e
		}
	}
	if err == nil && !noScript && len(refused) > 0 {
		err = r.retryCandles(ctx, groups, refused)
	}
	return stale, noScript, err
}

// cmdsPerPair is the pipeline's shape per pair: EVALSHA, ZADD, trim,
// expire; then the candle EVALSHA when candles are on.
const cmdsPerPair = 4

func isNoScript(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.IsNoScript()
}

func (r *redisBackend) latest(ctx context.Context, p tick.Pair) (tick.Tick, bool, error) {
	var res rueidis.RedisResult
	if r.cacheTTL > 0 {
		res = r.c.DoCache(ctx, r.c.B().Get().Key(tickKey(p)).Cache(), r.cacheTTL)
	} else {
		res = r.c.Do(ctx, r.c.B().Get().Key(tickKey(p)).Build())
	}
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return tick.Tick{}, false, nil
	}
	if err != nil {
		return tick.Tick{}, false, err
	}
	var t tick.Tick
	if err := tick.Unmarshal(b, &t); err != nil {
		return tick.Tick{}, false, fmt.Errorf("%s holds a bad tick: %w", tickKey(p), err)
	}
	return t, true, nil
}

func (r *redisBackend) history(ctx context.Context, q tick.Query) (tick.Window, error) {
	p := tick.Pair{Exchange: q.Exchange, Symbol: q.Symbol}
	hk := historyKey(p)
	lo, hi := scoreBounds(q)
	b := r.c.B()
	// One round trip: the set's size and oldest member give the coverage,
	// the range gives the answer.
	res := r.c.DoMulti(ctx,
		b.Zcard().Key(hk).Build(),
		b.Zrange().Key(hk).Min("0").Max("0").Withscores().Build(),
		b.Zrevrangebyscore().Key(hk).Max(strconv.FormatInt(hi, 10)).Min(strconv.FormatInt(lo, 10)).
			Limit(0, int64(q.Limit)).Build())
	n, err := res[0].AsInt64()
	if err != nil {
		return tick.Window{}, err
	}
	oldest, err := res[1].AsZScores()
	if err != nil {
		return tick.Window{}, err
	}
	members, err := res[2].AsStrSlice()
	if err != nil {
		return tick.Window{}, err
	}
	if n == 0 || len(oldest) == 0 {
		return tick.Window{}, nil
	}
	since := coverageStart(int64(oldest[0].Score), int(n), r.cap)
	out := make([]tick.Tick, 0, len(members))
	for _, m := range members {
		var t tick.Tick
		if err := tick.Unmarshal([]byte(m), &t); err != nil {
			return tick.Window{}, fmt.Errorf("%s holds a bad tick: %w", hk, err)
		}
		if t.Timestamp < since {
			break // newest first: the rest are older still
		}
		out = append(out, t)
	}
	return tick.Window{Ticks: out, Since: since}, nil
}

func (r *redisBackend) putLatest(ctx context.Context, t *tick.Tick, js []byte) error {
	p := t.Pair()
	if err := r.script.Exec(ctx, r.c, []string{tickKey(p)},
		[]string{strconv.FormatInt(t.Timestamp, 10), string(js), r.ttlMS}).Error(); err != nil {
		return err
	}
	b := r.c.B()
	return r.c.Do(ctx, b.Zadd().Key(pairsKey).Gt().ScoreMember().
		ScoreMember(float64(r.now().UnixMilli()), p.String()).Build()).Error()
}

func (r *redisBackend) pairs(ctx context.Context) ([]tick.Tick, error) {
	members, err := r.c.Do(ctx, r.c.B().Zrange().Key(pairsKey).Min("0").Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, err
	}
	keys := make([]tick.Pair, 0, len(members))
	for _, m := range members {
		ex, sym, ok := strings.Cut(m, ":")
		if !ok {
			continue // not written by us; ignore rather than fail the listing
		}
		keys = append(keys, tick.Pair{Exchange: ex, Symbol: sym})
	}
	if len(keys) == 0 {
		return nil, nil
	}
	var res []rueidis.RedisResult
	if r.cacheTTL > 0 {
		gets := make([]rueidis.CacheableTTL, len(keys))
		for i, p := range keys {
			gets[i] = rueidis.CT(r.c.B().Get().Key(tickKey(p)).Cache(), r.cacheTTL)
		}
		res = r.c.DoMultiCache(ctx, gets...)
	} else {
		gets := make(rueidis.Commands, len(keys))
		for i, p := range keys {
			gets[i] = r.c.B().Get().Key(tickKey(p)).Build()
		}
		res = r.c.DoMulti(ctx, gets...)
	}
	out := make([]tick.Tick, 0, len(res))
	for i, rr := range res {
		b, err := rr.AsBytes()
		if rueidis.IsRedisNil(err) {
			continue // expired since its last write; the index lags by design
		}
		if err != nil {
			return nil, err
		}
		var t tick.Tick
		if err := tick.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("%s holds a bad tick: %w", tickKey(keys[i]), err)
		}
		out = append(out, t)
	}
	sortPairs(out)
	return out, nil
}

func (r *redisBackend) ping(ctx context.Context) error {
	return r.c.Do(ctx, r.c.B().Ping().Build()).Error()
}

func (r *redisBackend) close() { r.c.Close() }
