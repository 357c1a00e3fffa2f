package cache

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// pairScript does a pair's whole share of a batch in one call: the
// conditional latest update, the history add, trim and expiry. Both keys
// must be in one hash slot, which under Redis Cluster needs hash tags
// (market_data:{binance:BTCUSDT}:…), a key layout change; measured here
// against the pipeline of four commands per pair the sink sends.
const pairScript = `
local set = 0
local cur = redis.call('GET', KEYS[1])
local ts = cur and tonumber(string.match(cur, '"timestamp":(%-?%d+)'))
if not ts or ts < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  set = 1
end
redis.call('ZADD', KEYS[2], unpack(ARGV, 5))
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[4]) - 1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return set
`

func (r *redisBackend) writeScript(ctx context.Context, sha string, groups []group) error {
	b := r.c.B()
	cmds := make(rueidis.Commands, 0, len(groups)+1)
	capArg := strconv.Itoa(r.cap)
	for gi := range groups {
		g := &groups[gi]
		n := g.entries[g.newest]
		args := make([]string, 0, 4+2*len(g.entries))
		args = append(args, strconv.FormatInt(n.t.Timestamp, 10), n.json, r.ttlMS, capArg)
		for _, e := range g.entries {
			args = append(args, strconv.FormatInt(e.t.Timestamp, 10), e.json)
		}
		cmds = append(cmds, b.Evalsha().Sha1(sha).Numkeys(2).Key(tickKey(g.pair), historyKey(g.pair)).Arg(args...).Build())
	}
	now := r.now().UnixMilli()
	pz := b.Zadd().Key(pairsKey).Gt().ScoreMember()
	for gi := range groups {
		pz = pz.ScoreMember(float64(now), groups[gi].pair.String())
	}
	cmds = append(cmds, pz.Build())
	for _, rr := range r.c.DoMulti(ctx, cmds...) {
		if err := rr.Error(); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkPairScriptVsCommands: 1000 pairs, batches of 1 000 (one tick
// per pair, a live feed) and 20 000 (twenty per pair, the ceiling under
// backlog), written the sink's way (EVALSHA latest + ZADD + trim + expire
// per pair, one pipeline) and as one script per pair (one pipeline). Run
// with BenchmarkRedisBaseline for the server's raw rate:
//
//	go test -run '^$' -bench 'PairScriptVsCommands|RedisBaseline' -benchtime 200000x -count 3 ./sinks/cache/
func BenchmarkPairScriptVsCommands(b *testing.B) {
	srv := testsvc.StartRedis(b, "--appendonly", "no")
	cfg := *DefaultConfig()
	cfg.Redis.Addrs = []string{srv.Addr()}
	s, err := New(sinks.Env{Clock: clock.Real}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Connect(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	be, _ := s.Cache.connected()
	r := be.(*redisBackend)
	sha, err := r.c.Do(ctx, r.c.B().ScriptLoad().Script(pairScript).Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	const pairs = 1000
	for _, size := range []int{1000, 20_000} {
		batches := make([][]tick.Tick, 8)
		ts := int64(1_767_000_000_000)
		for i := range batches {
			batches[i] = make([]tick.Tick, size)
			for j := range batches[i] {
				ts++
				batches[i][j] = tick.Tick{Exchange: "binance", Symbol: fmt.Sprintf("SYM%04dUSDT", j%pairs), Timestamp: ts,
					Price: tick.MustDecimal("50123.45"), Volume: tick.MustDecimal("12345.678"),
					Bid: tick.MustDecimal("50123.44"), Ask: tick.MustDecimal("50123.46"), ReceivedAt: ts * 1000}
			}
		}
		for _, way := range []string{"commands", "script"} {
			b.Run(fmt.Sprintf("batch=%d/%s", size, way), func(b *testing.B) {
				start := time.Now()
				written := 0
				for i := 0; written < b.N; i++ {
					groups, _ := s.Cache.group(batches[i%len(batches)])
					var err error
					if way == "script" {
						err = r.writeScript(ctx, sha, groups)
					} else {
						_, _, err = r.writeOnce(ctx, groups)
					}
					if err != nil {
						b.Fatal(err)
					}
					written += size
				}
				b.ReportMetric(float64(written)/time.Since(start).Seconds(), "ticks/s")
			})
		}
	}
}
