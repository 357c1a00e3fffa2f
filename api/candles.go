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
}

type candlesPage struct {
	Exchange string       `json:"exchange"`
	Symbol   string       `json:"symbol"`
	Interval string       `json:"interval"`
	From     int64        `json:"from"`
	To       int64        `json:"to"`
	Candles  []candleJSON `json:"candles"`
}

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
	if s.opts.Candles == nil {
		return unavailable([]layerFailure{{layerStore, errNotConfigured.Error()}})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), storeTimeout)
	defer cancel()
	candles, err := s.opts.Candles.Candles(ctx, q)
	if err != nil {
		return unavailable([]layerFailure{{layerStore, err.Error()}})
	}
	page := candlesPage{Exchange: ex, Symbol: sym, Interval: name, From: q.From.UnixMilli(), To: q.To.UnixMilli(),
		Candles: make([]candleJSON, len(candles))}
	for i, k := range candles {
		// 'f': plain digits always, never "1E-8".
		page.Candles[i] = candleJSON{Start: k.Start.UnixMilli(), Open: k.Open.Text('f'), High: k.High.Text('f'),
			Low: k.Low.Text('f'), Close: k.Close.Text('f'), Ticks: k.Ticks}
	}
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
			"ticks": Schema{"type": "integer", "format": "int64", "description": "number of ticks in the bucket"},
		},
	})
	timeSchema := Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}
	describe("GET", "/api/v1/candles/:exchange/:symbol", Operation{
		Summary: "OHLC candles of a pair",
		Description: "Computed by the history store (ClickHouse) from the stored ticks: open is the first price in the " +
			"bucket by exchange event time, close the last, high and low the extremes, ticks the count. Buckets are " +
			"aligned to UTC (a 1d bucket starts at 00:00 UTC); the window is widened to whole buckets, from rounded " +
			"down and to rounded up, and to is exclusive. Buckets without ticks are left out. There is no volume: " +
			"a ticker's volume is a rolling 24 h figure, not a per-bucket one, so summing or differencing it would " +
			"be wrong. Each tick is counted once even if it was stored twice by a replay.",
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
			"required": []string{"exchange", "symbol", "interval", "from", "to", "candles"},
			"properties": map[string]any{
				"exchange": Schema{"type": "string"},
				"symbol":   Schema{"type": "string"},
				"interval": Schema{"type": "string"},
				"from":     Schema{"type": "integer", "format": "int64", "description": "the widened window start, Unix ms"},
				"to":       Schema{"type": "integer", "format": "int64", "description": "the widened window end (exclusive), Unix ms"},
				"candles":  ArrayOf(Ref("Candle")),
			},
		},
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_interval (not one of 1m 5m 15m 1h 1d), invalid_from, " +
				fmt.Sprintf("invalid_to, or invalid_range (from not before to, or more than %d buckets)", MaxCandles),
			503: "unavailable: the history store is not configured or could not answer",
		},
	})
}
