// Package sim is a simulated exchange for offline demos: random-walk prices
// for configured symbols, in the same tick shape as a real source, labelled
// Exchange "sim" so they are never mistaken for market data.
//
// Prices live as integers in units of a fixed per-symbol scale (cents for
// BTCUSDT, 1/10000 for XRPUSDT) and become apd.Decimals only when a tick is
// built, so every value is exact and keeps its scale ("65000.10" stays two
// places). The 24 h figures are a rolling window of 24 hourly buckets,
// pre-filled with a plausible history at start. With a Seed and an injected
// clock the output is fully deterministic.
package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/tick"
)

// Exchange is the Exchange of every simulated tick.
const Exchange = "sim"

// Options configure the simulator; the first group mirrors Config.
type Options struct {
	Symbols  []string
	Interval time.Duration // between two ticks of one symbol; default 250 ms
	Seed     int64         // 0 picks a random seed (logged, to replay a run)

	Queue   ingest.Enqueuer // required
	Clock   clock.Clock
	Logger  *slog.Logger
	Metrics prometheus.Registerer
}

// Feed is the simulated exchange.
type Feed struct {
	o       Options
	log     *slog.Logger
	seed    int64
	rng     *rand.Rand
	markets []*market
}

var _ ingest.Feed = (*Feed)(nil)

// New validates o and sets up the markets (their 24 h history included).
func New(o Options) (*Feed, error) {
	if o.Interval == 0 {
		o.Interval = DefaultConfig().Interval
	}
	o.Clock = clock.OrReal(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(o.Symbols) == 0:
		return nil, errors.New("sim: symbols: none given")
	case o.Interval < 0:
		return nil, fmt.Errorf("sim: interval must be > 0, got %s", o.Interval)
	case o.Queue == nil:
		return nil, errors.New("sim: queue: required")
	}
	m, err := ingest.NewMetrics(o.Metrics)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	seed := o.Seed
	for seed == 0 {
		seed = rand.Int64()
	}
	f := &Feed{
		o:    o,
		log:  o.Logger.With("source", Exchange),
		seed: seed,
		rng:  rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
	}
	now := o.Clock.Now()
	seen := map[string]bool{}
	for _, s := range o.Symbols {
		sym := tick.NormalizeSymbol(s)
		if sym == "" || strings.ContainsAny(sym, " /@:\t") {
			return nil, fmt.Errorf("sim: symbols: bad symbol %q", s)
		}
		if seen[sym] {
			return nil, fmt.Errorf("sim: symbols: %q listed twice", s)
		}
		seen[sym] = true
		mk := newMarket(sym, f.rng, now)
		mk.received = m.Received.WithLabelValues(Exchange, sym)
		f.markets = append(f.markets, mk)
	}
	return f, nil
}

// Seed is the seed in use, the configured one or the one picked at random.
func (f *Feed) Seed() int64 { return f.seed }

// Run emits ticks until ctx ends: each symbol every Interval, the symbols
// staggered evenly within it. It returns nil on cancellation, or the
// queue's error if it stops accepting.
func (f *Feed) Run(ctx context.Context) error {
	f.log.Info("sim: starting simulated exchange", "symbols", len(f.markets), "interval", f.o.Interval, "seed", f.seed)
	gap := f.o.Interval / time.Duration(len(f.markets))
	next := f.o.Clock.Now()
	var t tick.Tick
	for i := 0; ; i = (i + 1) % len(f.markets) {
		if wait := next.Sub(f.o.Clock.Now()); wait > 0 {
			timer := f.o.Clock.NewTimer(wait)
			select {
			case <-timer.C():
			case <-ctx.Done():
				timer.Stop()
				return nil
			}
		} else if ctx.Err() != nil {
			return nil
		}
		now := f.o.Clock.Now()
		mk := f.markets[i]
		mk.step(f.rng, now, &t)
		if err := f.o.Queue.Enqueue(ctx, &t); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sim: queue refused a tick: %w", err)
		}
		mk.received.Inc()
		// Keep to the schedule, but after a stall (a blocked queue) start
		// again from now rather than bursting to catch up.
		next = next.Add(gap)
		if now := f.o.Clock.Now(); next.Before(now) {
			next = now
		}
	}
}

// market is one simulated pair.
type market struct {
	symbol   string
	scale    int32 // decimal places of prices
	qtyScale int32 // decimal places of sizes
	price    int64 // last price, in units of 10^-scale
	move     int64 // largest move per tick, in price units
	spread   int64 // half the bid/ask spread, in price units
	floor    int64 // the walk reflects off this price
	maxQty   int64 // largest trade, in size units

	hours     [24]bucket // rolling 24 h, one bucket per hour; cur is the newest
	cur       int
	hourStart time.Time

	received prometheus.Counter
}

// bucket is one hour of trading.
type bucket struct {
	open, high, low int64       // price units
	volume          int64       // size units
	quote           apd.Decimal // exact sum of price × size
}

// profiles give well-known symbols a realistic price and scale; any other
// symbol gets a price derived from its name.
var profiles = map[string]struct {
	price           string
	scale, qtyScale int32
}{
	"BTCUSDT": {"65000.00", 2, 5},
	"ETHUSDT": {"3400.00", 2, 4},
	"SOLUSDT": {"150.00", 2, 3},
	"BNBUSDT": {"600.00", 2, 3},
	"XRPUSDT": {"0.5200", 4, 1},
}

func newMarket(sym string, rng *rand.Rand, now time.Time) *market {
	mk := &market{symbol: sym, scale: 4, qtyScale: 2}
	if p, ok := profiles[sym]; ok {
		var d apd.Decimal
		_, _, _ = d.SetString(p.price)
		mk.scale, mk.qtyScale = p.scale, p.qtyScale
		mk.price = d.Coeff.Int64()
	} else {
		// 1.0000 .. 999.9999, fixed by the name so a symbol keeps its
		// price level across seeds.
		h := fnv.New64a()
		h.Write([]byte(sym))
		mk.price = 10_000 + int64(h.Sum64()%9_990_000)
	}
	mk.move = max(1, mk.price/2000)    // 0.05 % per tick
	mk.spread = max(1, mk.price/20000) // 0.005 % each side
	mk.floor = max(mk.price/10, 4*mk.spread)
	// Trades up to about 5 000 quote units.
	mk.maxQty = max(1, 5_000*pow10(mk.scale+mk.qtyScale)/mk.price)

	// A day of history, hour by hour; the live walk goes on from its end.
	p := mk.price
	for h := 0; h < 24; h++ {
		b := &mk.hours[h]
		open := p
		for range 60 { // a minute-resolution walk inside the hour
			p = mk.walk(rng, p, 4*mk.move)
			b.high, b.low = max(b.high, p, open), minNonZero(b.low, min(p, open))
		}
		b.open = open
		for range 200 {
			mk.trade(rng, b, p)
		}
	}
	mk.price = p
	mk.cur = 23
	mk.hourStart = now
	return mk
}

func (mk *market) walk(rng *rand.Rand, p, move int64) int64 {
	d := rng.Int64N(2*move+1) - move
	if p+d < mk.floor {
		d = -d
	}
	return p + d
}

func (mk *market) trade(rng *rand.Rand, b *bucket, price int64) {
	qty := 1 + rng.Int64N(mk.maxQty)
	b.volume += qty
	var notional apd.Decimal
	notional.SetFinite(price, -mk.scale)
	var q apd.Decimal
	q.SetFinite(qty, -mk.qtyScale)
	_, _ = apd.BaseContext.Mul(&notional, &notional, &q)
	_, _ = apd.BaseContext.Add(&b.quote, &b.quote, &notional)
}

// step moves the market one trade forward at now and writes the tick.
func (mk *market) step(rng *rand.Rand, now time.Time, t *tick.Tick) {
	for now.Sub(mk.hourStart) >= time.Hour {
		mk.cur = (mk.cur + 1) % 24
		mk.hours[mk.cur] = bucket{open: mk.price, high: mk.price, low: mk.price}
		mk.hourStart = mk.hourStart.Add(time.Hour)
	}
	mk.price = mk.walk(rng, mk.price, mk.move)
	b := &mk.hours[mk.cur]
	b.high, b.low = max(b.high, mk.price), min(b.low, mk.price)
	mk.trade(rng, b, mk.price)

	oldest := &mk.hours[(mk.cur+1)%24]
	high, low, volume := mk.price, mk.price, int64(0)
	var quote apd.Decimal
	for i := range mk.hours {
		h := &mk.hours[i]
		high, low, volume = max(high, h.high), min(low, h.low), volume+h.volume
		_, _ = apd.BaseContext.Add(&quote, &quote, &h.quote)
	}
	*t = tick.Tick{
		Exchange:   Exchange,
		Symbol:     mk.symbol,
		Timestamp:  now.UnixMilli(),
		ReceivedAt: now.UnixMicro(),
	}
	t.Price.SetFinite(mk.price, -mk.scale)
	t.Bid.SetFinite(mk.price-mk.spread, -mk.scale)
	t.Ask.SetFinite(mk.price+mk.spread, -mk.scale)
	t.Open24h.SetFinite(oldest.open, -mk.scale)
	t.High24h.SetFinite(high, -mk.scale)
	t.Low24h.SetFinite(low, -mk.scale)
	t.Volume.SetFinite(volume, -mk.qtyScale)
	t.QuoteVolume.Set(&quote)
}

func pow10(n int32) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

func minNonZero(a, b int64) int64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}
