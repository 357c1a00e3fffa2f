package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// Traded volume.
//
// The cache sink also consumes the trades topic (sinks.TradeConsumer, its
// own runtime and group, tickflow.cache.trades, with the ticks' sharing):
// per pair and 1m bucket of event time it adds up the trades' sizes and
// counts them, and a candle read attaches both to the tick bucket of the
// same start. A bucket that saw trades but no tick has no prices and is
// not a candle, so it is not shown; one that saw ticks but no trade shows
// no volume rather than a 0 that was never measured.
//
// Sizes are summed exactly: in Go with apd (BaseContext, precision 0, no
// rounding) per bucket and batch, and in Redis by a Lua script that adds
// the stored decimal string and the batch's digit by digit, as the candle
// script compares prices (a Lua number is a double: it would round a sum
// past 15 or so significant digits).
//
// Idempotence: a batch is retried, replayed from the last commit, or
// handed to a new owner, so each pair keeps a watermark: the greatest
// receive time (µs) it has counted and the ids of the trades counted with
// that receive time (the trades of one frame share it). A trade received
// before the watermark, or at it with an id in the set, is a redelivery
// and is not counted again. As for ticks (candles.go), receive time orders
// a pair's stream, so a replay is a prefix of what was seen; what this
// does not count, and says here: a never-seen trade received before the
// watermark (the pair's trades reaching the sink out of receive order,
// see candles.go for when), and it counts twice a trade the exchange
// itself sent twice in different frames (the store keeps one row by trade
// id). A trade without a receive time cannot be placed and is dropped as
// invalid.

// volAgg is one bucket's traded volume.
type volAgg struct {
	start  int64 // Unix ms
	volume apd.Decimal
	trades uint64
}

// tradeMark is a pair's trade watermark.
type tradeMark struct {
	recv int64    // µs; -1 before the first trade
	ids  []string // sorted, the trades counted at recv
}

var noTradeMark = tradeMark{recv: -1}

func (w tradeMark) seen(t *tick.Trade) bool {
	if t.ReceivedAt != w.recv {
		return t.ReceivedAt < w.recv
	}
	_, found := slices.BinarySearch(w.ids, t.TradeID)
	return found
}

// encode is the watermark as Redis keeps it: "recv id id ...", "" for
// none. Ids hold no whitespace (validTrade).
func (w tradeMark) encode() string {
	if w.recv < 0 {
		return ""
	}
	return strconv.FormatInt(w.recv, 10) + strings.Join(append([]string{""}, w.ids...), " ")
}

func decodeTradeMark(s string) (tradeMark, error) {
	if s == "" {
		return noTradeMark, nil
	}
	f := strings.Fields(s)
	recv, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return noTradeMark, fmt.Errorf("trade watermark %q unreadable", s)
	}
	return tradeMark{recv: recv, ids: f[1:]}, nil
}

// tradeGroup is one pair's share of a trade batch.
type tradeGroup struct {
	pair   tick.Pair
	trades []*tick.Trade
}

// volumeUpdate is what a pair's batch adds, computed against a watermark.
type volumeUpdate struct {
	aggs []volAgg // ascending by start
	top  tradeMark
	dups int // trades left out as already counted
}

// volumeUpdateFor sums g's trades that w has not counted.
func volumeUpdateFor(g *tradeGroup, w tradeMark) (volumeUpdate, error) {
	u := volumeUpdate{top: tradeMark{recv: w.recv, ids: slices.Clone(w.ids)}}
	fresh := make([]*tick.Trade, 0, len(g.trades))
	inBatch := make(map[string]struct{}, len(g.trades))
	for _, t := range g.trades {
		if w.seen(t) {
			u.dups++
			continue
		}
		if _, dup := inBatch[t.TradeID]; dup {
			u.dups++
			continue
		}
		inBatch[t.TradeID] = struct{}{}
		fresh = append(fresh, t)
		switch {
		case t.ReceivedAt > u.top.recv:
			u.top = tradeMark{recv: t.ReceivedAt, ids: []string{t.TradeID}}
		case t.ReceivedAt == u.top.recv:
			u.top.ids = append(u.top.ids, t.TradeID)
		}
	}
	slices.Sort(u.top.ids)
	sort.SliceStable(fresh, func(i, j int) bool { return fresh[i].Timestamp < fresh[j].Timestamp })
	for _, t := range fresh {
		start := bucketOf(t.Timestamp, candleBucketMS)
		n := len(u.aggs)
		if n == 0 || u.aggs[n-1].start != start {
			u.aggs = append(u.aggs, volAgg{start: start})
			n++
		}
		a := &u.aggs[n-1]
		if _, err := apd.BaseContext.Add(&a.volume, &a.volume, &t.Size); err != nil {
			return u, fmt.Errorf("%s: volume: %w", g.pair, err)
		}
		a.trades++
	}
	return u, nil
}

// encode is a bucket as Redis keeps it: "<volume> <trades>".
func (a *volAgg) encode() string {
	return a.volume.Text('f') + " " + strconv.FormatUint(a.trades, 10)
}

func decodeVolAgg(start int64, s string) (volAgg, error) {
	a := volAgg{start: start}
	v, n, ok := strings.Cut(s, " ")
	if !ok {
		return a, fmt.Errorf("volume bucket %d: %q", start, s)
	}
	if _, _, err := a.volume.SetString(v); err != nil {
		return a, fmt.Errorf("volume bucket %d: %q: %w", start, v, err)
	}
	var err error
	if a.trades, err = strconv.ParseUint(n, 10, 64); err != nil {
		return a, fmt.Errorf("volume bucket %d: trades %q: %w", start, n, err)
	}
	return a, nil
}

// attachVolume sets each tick bucket's volume from vs (both ascending by
// start); volume buckets without a tick bucket are dropped.
func attachVolume(aggs []candleAgg, vs []volAgg) {
	j := 0
	for i := range aggs {
		for j < len(vs) && vs[j].start < aggs[i].start {
			j++
		}
		if j < len(vs) && vs[j].start == aggs[i].start {
			aggs[i].volume.Set(&vs[j].volume)
			aggs[i].trades = vs[j].trades
		}
	}
}

// validTrade is validTick for trades, plus what the watermark needs.
func validTrade(t *tick.Trade) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if t.Timestamp > maxScore {
		return fmt.Errorf("timestamp %d is past 2^53 ms (not Unix milliseconds?)", t.Timestamp)
	}
	if t.ReceivedAt <= 0 {
		return fmt.Errorf("no receive time: the trade cannot be placed against the watermark")
	}
	for _, s := range [...]string{t.Exchange, t.Symbol, t.TradeID} {
		for _, c := range []byte(s) {
			if c <= ' ' || c == ':' || c == 0x7f {
				return fmt.Errorf("%q has a character not allowed in a key or watermark", s)
			}
		}
	}
	return nil
}

// tradeWriter is the cache sink's sinks.TradeSink: it writes into the
// sink's Cache, and closing it leaves the Cache to the sink.
type tradeWriter struct{ c *Cache }

var (
	_ sinks.TradeConsumer = (*Sink)(nil)
	_ sinks.TradeSink     = tradeWriter{}
)

// TradeWriter is sinks.TradeConsumer: the host runs it on the trades topic.
func (s *Sink) TradeWriter() sinks.TradeSink { return tradeWriter{s.Cache} }

func (w tradeWriter) Connect(ctx context.Context) error { return w.c.Connect(ctx) }
func (w tradeWriter) Close(context.Context) error       { return nil }

// WriteBatch adds the batch's trades to their pairs' recent trades and
// their buckets' volume. Invalid trades are dropped and counted; a backend
// error fails the batch, which is idempotent to retry.
func (w tradeWriter) WriteBatch(ctx context.Context, batch []tick.Trade) error {
	return w.c.writeTrades(ctx, batch)
}

func (c *Cache) writeTrades(ctx context.Context, batch []tick.Trade) error {
	if c.cfg.CandleRetention == 0 && c.cfg.Trades == 0 {
		return nil
	}
	b, err := c.connected()
	if err != nil {
		return err
	}
	var (
		groups   []tradeGroup
		idx      = map[tick.Pair]int{}
		invalid  int
		firstBad error
	)
	for i := range batch {
		t := &batch[i]
		if err := validTrade(t); err != nil {
			if invalid == 0 {
				firstBad = fmt.Errorf("%s trade %q: %w", t.Key(), t.TradeID, err)
			}
			invalid++
			continue
		}
		gi, ok := idx[t.Pair()]
		if !ok {
			gi = len(groups)
			idx[t.Pair()] = gi
			groups = append(groups, tradeGroup{pair: t.Pair()})
		}
		groups[gi].trades = append(groups[gi].trades, t)
	}
	if invalid > 0 {
		c.m.tradesInvalid.Add(float64(invalid))
		c.log.Warn("cache: dropped invalid trades", "count", invalid, "first", firstBad)
	}
	if len(groups) == 0 {
		return nil
	}
	dups, err := b.writeTrades(ctx, groups)
	if err != nil {
		c.m.batchErrors.Inc()
		if ctx.Err() == nil {
			c.state.observe(err)
		}
		return fmt.Errorf("cache: write %d trades: %w", len(batch)-invalid, err)
	}
	c.state.observe(nil)
	c.m.tradesCounted.Add(float64(len(batch) - invalid - dups))
	c.m.tradesSeen.Add(float64(dups))
	return nil
}

// RecentTrades is the pair's newest trades, newest first, at most limit
// (and at most the trades setting): the API's TradeCache.
func (c *Cache) RecentTrades(ctx context.Context, exchange, symbol string, limit int) ([]tick.Trade, error) {
	if c.cfg.Trades == 0 {
		return nil, errTradesOff
	}
	b, err := c.backend(ctx)
	if err != nil {
		return nil, err
	}
	p := tick.Pair{Exchange: exchange, Symbol: symbol}
	members, err := b.recentTrades(ctx, p, min(max(limit, 1), c.cfg.Trades))
	if err != nil {
		return nil, err
	}
	out := make([]tick.Trade, len(members))
	for i, m := range members {
		if err := tick.UnmarshalTrade([]byte(m), &out[i]); err != nil {
			return nil, fmt.Errorf("cache: %s holds a bad trade: %w", recentTradesKey(p), err)
		}
	}
	return out, nil
}

// errTradesOff is what trade reads answer with trades: 0, so the API
// falls back to the trades topic.
var errTradesOff = errors.New("cache: recent trades are off (trades: 0)")
