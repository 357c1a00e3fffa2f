package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/tick"
)

// CandleReader computes OHLC candles from the tick history; the store sink
// implements it.
type CandleReader interface {
	Candles(ctx context.Context, q tick.CandleQuery) ([]tick.Candle, error)
}

// CandleCache is the rolling candles the cache sink keeps from the tick
// stream; the cache implements it. Its method name differs from
// CandleReader's on purpose, as TickCache's do from TickHistory's.
type CandleCache interface {
	// RecentCandles answers q from what the cache holds; see
	// tick.CandleWindow for what Since promises.
	RecentCandles(ctx context.Context, q tick.CandleQuery) (CachedCandles, error)
}

// CachedCandles is what the cache holds of a pair's candles for a query.
type CachedCandles = tick.CandleWindow

// candleIntervals are the bucket widths the candles endpoint offers. Each
// divides a day, so buckets aligned to the Unix epoch are aligned to UTC.
var candleIntervals = map[string]time.Duration{
	"1m":  time.Minute,
	"5m":  5 * time.Minute,
	"15m": 15 * time.Minute,
	"1h":  time.Hour,
	"1d":  24 * time.Hour,
}

// Limits of the candles endpoint, documented in the OpenAPI description.
const (
	DefaultCandleInterval = "1m"
	// DefaultCandles is how many buckets back from "to" an absent "from"
	// reaches.
	DefaultCandles = 500
	// MaxCandles bounds the buckets one request may span.
	MaxCandles = 5000
)

func init() {
	addRoutes(func(s *Server) {
		s.e.GET("/api/v1/candles/:exchange/:symbol", s.getCandles)
	})
	describeCandles()
}

// candleJSON is one bucket on the wire: decimals as exact strings.
type candleJSON struct {
	Start int64  `json:"start"`
	Open  string `json:"open"`
	High  string `json:"high"`
	Low   string `json:"low"`
	Close string `json:"close"`
	Ticks uint64 `json:"ticks"`
	// Volume and Trades are absent when no trades were counted for the
	// bucket: a feed without trades is not shown a 0 volume.
	Volume string `json:"volume,omitempty"`
	Trades uint64 `json:"trades,omitempty"`
}

type candlesPage struct {
	Exchange string       `json:"exchange"`
	Symbol   string       `json:"symbol"`
	Interval string       `json:"interval"`
	From     int64        `json:"from"`
	To       int64        `json:"to"`
	Candles  []candleJSON `json:"candles"`
	candlesSource
}

// candlesPage's Source is "cache", "store" or "cache+store", as for ticks.
type candlesSource struct {
	Source string `json:"source"`
	// Partial means the store was needed and could not be read: buckets
	// before the cache's coverage are the cache's, possibly short of ticks
	// it never saw; Unavailable says which layer failed.
	Partial     bool           `json:"partial,omitempty"`
	Unavailable []layerFailure `json:"unavailable,omitempty"`
}

// getCandles answers from the cache's rolling candles for the buckets it
// holds whole and from the store for the older ones, split at a bucket
// boundary, with the fallbacks of GET /api/v1/ticks (layered).
func (s *Server) getCandles(c echo.Context) error {
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	q, name, err := s.candleQuery(c)
	if err != nil {
		return err
	}
	q.Exchange, q.Symbol = ex, sym
	iv := q.Interval.Milliseconds()
	var (
		cached, stored []tick.Candle
		split          int64 // buckets from here on are the cache's when the store answered
		l              layered
	)
	if s.opts.CandleCache != nil {
		l.cache = func(ctx context.Context) (int64, error) {
			w, err := s.opts.CandleCache.RecentCandles(ctx, q)
			if err != nil {
				return 0, err
			}
			cached = w.Candles
			return w.Since, nil
		}
	}
	// A bucket is the cache's to answer if it starts at or after the
	// cache's coverage; the store is asked for the range before that.
	l.needStore = func(since int64) bool {
		return since == 0 || q.From.UnixMilli() < (since+iv-1)/iv*iv
	}
	if s.opts.Candles != nil {
		l.store = func(ctx context.Context, cacheOK bool, since int64) error {
			sq := q
			split = q.To.UnixMilli()
			if cacheOK && since > 0 {
				split = min(split, (since+iv-1)/iv*iv)
				sq.To = time.UnixMilli(split).UTC()
			}
			out, err := s.opts.Candles.Candles(ctx, sq)
			stored = out
			return err
		}
	}
	r, err := l.read(c.Request().Context())
	if err != nil {
		return err
	}
	candles, cacheN, storeN := cached, len(cached), 0
	if r.storeOK {
		// Merged at the split: the store's buckets before it, the cache's
		// from it on.
		candles = stored
		cacheN = 0
		for _, k := range cached {
			if k.Start.UnixMilli() >= split {
				candles = append(candles, k)
				cacheN++
			}
		}
		storeN = len(stored)
	}
	src := candlesSource{Source: r.source(cacheN, storeN), Partial: r.partial}
	if r.partial {
		src.Unavailable = r.unavailable
	}
	page := candlesPage{Exchange: ex, Symbol: sym, Interval: name, From: q.From.UnixMilli(), To: q.To.UnixMilli(),
		Candles: make([]candleJSON, len(candles)), candlesSource: src}
	for i, k := range candles {
		// 'f': plain digits always, never "1E-8".
		page.Candles[i] = candleJSON{Start: k.Start.UnixMilli(), Open: k.Open.Text('f'), High: k.High.Text('f'),
			Low: k.Low.Text('f'), Close: k.Close.Text('f'), Ticks: k.Ticks}
		if k.Trades > 0 {
			page.Candles[i].Volume, page.Candles[i].Trades = k.Volume.Text('f'), k.Trades
		}
	}
	c.Response().Header().Set(SourceHeader, page.Source)
	return ok(c, page)
}

// candleQuery parses interval, from and to. The window is widened to whole
// buckets (from down, to up) so no bucket comes back cut short.
func (s *Server) candleQuery(c echo.Context) (tick.CandleQuery, string, error) {
	var q tick.CandleQuery
	name := c.QueryParam("interval")
	if name == "" {
		name = DefaultCandleInterval
	}
	iv, known := candleIntervals[name]
	if !known {
		return q, "", errorf(http.StatusBadRequest, "invalid_interval",
			fmt.Sprintf("interval %q: want one of %s", name, strings.Join(intervalNames(), ", ")))
	}
	q.Interval = iv
	from, err := timeParam(c, "from")
	if err != nil {
		return q, "", err
	}
	to, err := timeParam(c, "to")
	if err != nil {
		return q, "", err
	}
	if to.IsZero() {
		to = s.opts.Clock.Now()
	}
	ivMs := iv.Milliseconds()
	toMs := (to.UnixMilli() + ivMs - 1) / ivMs * ivMs
	fromMs := toMs - DefaultCandles*ivMs
	if !from.IsZero() {
		fromMs = from.UnixMilli() / ivMs * ivMs
	}
	switch {
	case fromMs >= toMs:
		return q, "", errorf(http.StatusBadRequest, "invalid_range", "from must be before to")
	case (toMs-fromMs)/ivMs > MaxCandles:
		return q, "", errorf(http.StatusBadRequest, "invalid_range",
			fmt.Sprintf("from..to spans %d %s buckets; at most %d per request", (toMs-fromMs)/ivMs, name, MaxCandles))
	}
	q.From, q.To = time.UnixMilli(fromMs).UTC(), time.UnixMilli(toMs).UTC()
	return q, name, nil
}

func intervalNames() []string {
	names := make([]string, 0, len(candleIntervals))
	for n := range candleIntervals {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return candleIntervals[names[i]] < candleIntervals[names[j]] })
	return names
}

func describeCandles() {
	dec := func(d string) Schema { return Schema{"type": "string", "description": d, "example": "50100.5"} }
	defineSchema("Candle", Schema{
		"type":     "object",
		"required": []string{"start", "open", "high", "low", "close", "ticks"},
		"properties": map[string]any{
			"start": Schema{"type": "integer", "format": "int64", "description": "bucket start, Unix ms, aligned to UTC"},
			"open":  dec("first price in the bucket by exchange event time (decimal string)"),
			"high":  dec("highest price in the bucket"),
			"low":   dec("lowest price in the bucket"),
			"close": dec("last price in the bucket by exchange event time"),
			"ticks": Schema{"type": "integer", "format": "int64",
				"description": "number of distinct ticks in the bucket: activity (price updates), not traded volume"},
			"volume": Schema{"type": "string", "example": "12.75031",
				"description": "traded volume: the exact sum of the sizes (in the base asset) of the bucket's distinct trades " +
					"(decimal string); absent when no trades were counted for the bucket"},
			"trades": Schema{"type": "integer", "format": "int64",
				"description": "number of distinct trades in the bucket; absent with volume"},
		},
	})
	timeSchema := Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}
	describe("GET", "/api/v1/candles/:exchange/:symbol", Operation{
		Summary: "OHLC candles of a pair",
		Description: "Recent buckets come from the cache's rolling candles (Redis or in-process: 1m buckets kept for " +
			"the cache's candle_retention, 24 h by default, built from the tick stream; coarser intervals are merged " +
			"from them, and their traded volume from the trade stream), older ones from the history store (ClickHouse), split at a bucket boundary: a bucket is the " +
			"cache's if it starts at or after the cache's coverage (the bucket after the first one it saw the pair in, " +
			"or the start of its retained window). With the same fallbacks as GET /api/v1/ticks: the cache down or " +
			"not configured, the store answers all; the store down or not configured, the cache answers what it " +
			"holds (its oldest bucket may lack ticks from before it started), flagged partial=true when the store " +
			"was needed but failed; neither, a 503 naming both. The " + SourceHeader + " header and source say " +
			"which answered. Open is the first price in the bucket by exchange event time, close the last, high and " +
			"low the extremes, ticks the count of distinct ticks (a replayed or redelivered tick is counted once, by " +
			"the store and by the cache alike). Buckets are aligned to UTC (a 1d bucket starts at 00:00 UTC); the " +
			"window is widened to whole buckets, from rounded down and to rounded up, and to is exclusive. Buckets " +
			"without ticks are left out. Volume and trades come from the pair's trades (topic market_data.trades), " +
			"not from the ticker, whose volume is a rolling 24 h figure: the cache sums each 1m bucket's distinct " +
			"trades as it consumes them (a redelivered or replayed trade is counted once, by receive time and trade " +
			"id), the store sums its trades table (each trade id once) over the same range; both are exact decimals. " +
			"A bucket for which no trade was counted (a feed without trades, trades not consumed, or the store's " +
			"trades table unreadable) has neither field, which is not a 0 volume; a bucket with trades but no tick " +
			"has no prices and is left out. Ticks (how many price updates the exchange sent) is a measure of " +
			"activity, not of traded size.",
		Tags: []string{"history"},
		Params: []Param{
			PathParam("exchange", "exchange name, case-insensitive (binance); 1..64 of A-Z a-z 0-9 . _ -"),
			PathParam("symbol", "pair as the exchange names it, case-insensitive (BTCUSDT); 1..64 of A-Z a-z 0-9 . _ -"),
			QueryParam("interval", "bucket width; default "+DefaultCandleInterval,
				Schema{"type": "string", "enum": intervalNames(), "default": DefaultCandleInterval}),
			QueryParam("from", fmt.Sprintf("window start, inclusive; default %d buckets before to", DefaultCandles), timeSchema),
			QueryParam("to", "window end, exclusive; default now", timeSchema),
		},
		Data: Schema{
			"type":     "object",
			"required": []string{"exchange", "symbol", "interval", "from", "to", "candles", "source"},
			"properties": map[string]any{
				"exchange": Schema{"type": "string"},
				"symbol":   Schema{"type": "string"},
				"interval": Schema{"type": "string"},
				"from":     Schema{"type": "integer", "format": "int64", "description": "the widened window start, Unix ms"},
				"to":       Schema{"type": "integer", "format": "int64", "description": "the widened window end (exclusive), Unix ms"},
				"candles":  ArrayOf(Ref("Candle")),
				"source":   Schema{"type": "string", "enum": []string{"cache", "store", "cache+store"}},
				"partial": Schema{"type": "boolean",
					"description": "true when the store was needed and could not be read: older buckets are the cache's only"},
				"unavailable": ArrayOf(Schema{"type": "object", "properties": map[string]any{"layer": Schema{"type": "string"}, "error": Schema{"type": "string"}}}),
			},
		},
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_interval (not one of 1m 5m 15m 1h 1d), invalid_from, " +
				fmt.Sprintf("invalid_to, or invalid_range (from not before to, or more than %d buckets)", MaxCandles),
			503: "unavailable: neither the cache nor the store could answer (or neither is configured); details.layers lists each failure",
		},
	})
}
