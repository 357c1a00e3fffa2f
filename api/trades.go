package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/tick"
)

// TradeSource lists a pair's recent trades (tick.Trade): the trade feed
// implements it.
type TradeSource interface {
	RecentTrades(exchange, symbol string) []tick.Trade
}

// TradeCache is the newest trades per pair that the cache sink keeps from
// the trades topic; the cache implements it. Its answer is newest first.
type TradeCache interface {
	RecentTrades(ctx context.Context, exchange, symbol string, limit int) ([]tick.Trade, error)
}

// TradeHistory is the durable trade history: the store implements it.
// Trades answers a page of one pair's trades, newest first, each once.
type TradeHistory interface {
	Trades(ctx context.Context, q TickQuery) ([]tick.Trade, error)
}

// QuoteSource lists a pair's recent best bid/ask quotes (tick.Quote): the
// quote feed implements it.
type QuoteSource interface {
	RecentQuotes(exchange, symbol string) []tick.Quote
}

func init() {
	addRoutes(func(s *Server) {
		s.e.GET("/api/v1/trades/:exchange/:symbol", s.getTrades)
		s.e.GET("/api/v1/trades/:exchange/:symbol/history", s.getTradeHistory)
		s.e.GET("/api/v1/quotes/:exchange/:symbol", s.getQuotes)
	})
	describeTradeRoutes()
}

func (s *Server) getTrades(c echo.Context) error {
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	limit, sinceMS, err := eventsQuery(c)
	if err != nil {
		return err
	}
	var cacheErr error
	if s.opts.TradeCache != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), cacheTimeout)
		defer cancel()
		all, err := s.opts.TradeCache.RecentTrades(ctx, ex, sym, limit)
		if err == nil {
			out := make([]tick.Trade, 0, len(all))
			for _, t := range all {
				if t.Timestamp >= sinceMS {
					out = append(out, t)
				}
			}
			c.Response().Header().Set(SourceHeader, layerCache)
			return ok(c, newestFirst(out, func(t tick.Trade) int64 { return t.Timestamp }, limit))
		}
		cacheErr = err
		s.log.Warn("api: trades from the cache failed; answering from the topic list", "err", err)
	}
	if s.opts.Trades == nil {
		msg := "no trade feed is followed here"
		if cacheErr != nil {
			msg += "; cache: " + cacheErr.Error()
		}
		return errorf(http.StatusServiceUnavailable, "unavailable", msg)
	}
	c.Response().Header().Set(SourceHeader, "topic")
	all := s.opts.Trades.RecentTrades(ex, sym)
	out := make([]tick.Trade, 0, len(all))
	for _, t := range all {
		if t.Timestamp >= sinceMS {
			out = append(out, t)
		}
	}
	return ok(c, newestFirst(out, func(t tick.Trade) int64 { return t.Timestamp }, limit))
}

// tradesPage is the data of GET /api/v1/trades/:exchange/:symbol/history.
type tradesPage struct {
	Exchange string       `json:"exchange"`
	Symbol   string       `json:"symbol"`
	Trades   []tick.Trade `json:"trades"`
	// NextBefore, when set, is the "before" value for the next page.
	NextBefore int64 `json:"next_before,omitempty"`
}

// getTradeHistory answers a range of a pair's trades from the store, with
// the tick history's parameters (limit, from, to, before).
func (s *Server) getTradeHistory(c echo.Context) error {
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	q, err := ticksQuery(c)
	if err != nil {
		return err
	}
	q.Exchange, q.Symbol = ex, sym
	if s.opts.TradeHistory == nil {
		return unavailable([]layerFailure{{layerStore, errNotConfigured.Error()}})
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), storeTimeout)
	defer cancel()
	trades, err := s.opts.TradeHistory.Trades(ctx, q)
	if err != nil {
		return unavailable([]layerFailure{{layerStore, err.Error()}})
	}
	if len(trades) > q.Limit {
		trades = trades[:q.Limit]
	}
	page := tradesPage{Exchange: ex, Symbol: sym, Trades: append([]tick.Trade{}, trades...)}
	if n := len(page.Trades); n == q.Limit {
		page.NextBefore = page.Trades[n-1].Timestamp
	}
	c.Response().Header().Set(SourceHeader, layerStore)
	return ok(c, page)
}

func (s *Server) getQuotes(c echo.Context) error {
	ex, sym, err := pairParams(c)
	if err != nil {
		return err
	}
	limit, sinceMS, err := eventsQuery(c)
	if err != nil {
		return err
	}
	if s.opts.Quotes == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "no quote feed is followed here")
	}
	all := s.opts.Quotes.RecentQuotes(ex, sym)
	out := make([]tick.Quote, 0, len(all))
	for _, q := range all {
		if q.Timestamp >= sinceMS {
			out = append(out, q)
		}
	}
	return ok(c, newestFirst(out, func(q tick.Quote) int64 { return q.Timestamp }, limit))
}

func describeTradeRoutes() {
	str := func(d string) Schema { return Schema{"type": "string", "description": d} }
	defineSchema("Trade", Schema{
		"type":     "object",
		"required": []string{"exchange", "symbol", "price", "size", "side", "trade_id", "timestamp"},
		"properties": map[string]any{
			"exchange":       Schema{"type": "string", "example": "okx"},
			"symbol":         Schema{"type": "string", "example": "BTC-USDT"},
			"base":           str("normalized base asset, when the symbol resolved"),
			"quote":          str("normalized quote asset"),
			"price":          str("execution price, exact decimal"),
			"size":           str("executed quantity in the base asset, exact decimal"),
			"side":           Schema{"type": "string", "enum": []string{string(tick.Buy), string(tick.Sell)}, "description": "the taker's side (Coinbase's maker side is inverted)"},
			"trade_id":       str("the exchange's trade id"),
			"timestamp":      Schema{"type": "integer", "format": "int64", "description": "exchange trade time, Unix ms"},
			"received_at_us": Schema{"type": "integer", "format": "int64", "description": "when tickflow read it, Unix µs"},
		},
	})
	describe("GET", "/api/v1/trades/:exchange/:symbol", Operation{
		Summary: "A pair's recent trades, newest first",
		Description: "From the cache's newest trades of the pair (Redis or in-process, the cache's trades setting, 1000 by " +
			"default, kept from the Kafka topic market_data.trades, which sources with trades: true publish to) when a cache is " +
			"configured; else, or when the cache fails, from a bounded in-process list of the newest trades of all pairs read " +
			"from the same topic. The " + SourceHeader + " header says which answered: cache or topic.",
		Tags: []string{"ticks"},
		Params: []Param{
			PathParam("exchange", "exchange name (okx)"),
			PathParam("symbol", "the exchange's symbol (BTC-USDT; Kraken's BTC/USD as BTC%2FUSD)"),
			QueryParam("since", "only trades at or after this event time", Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds"}),
			QueryParam("limit", "how many, 1.."+strconv.Itoa(MaxEventsLimit)+" (default "+strconv.Itoa(DefaultEventsLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxEventsLimit, "default": DefaultEventsLimit}),
		},
		Data: ArrayOf(Ref("Trade")),
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_since or invalid_limit",
			503: "unavailable: no trade feed behind this API",
		},
	})
	timeSchema := Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}
	describe("GET", "/api/v1/trades/:exchange/:symbol/history", Operation{
		Summary: "A pair's stored trades over a range, newest first",
		Description: "From the history store's trades table, which the store sink fills from market_data.trades in its own " +
			"consumer group (tickflow.store.trades), committing only after ClickHouse acknowledged each batch; a trade " +
			"written twice (a replay) is listed once. Page backwards by passing next_before as before; paging is by " +
			"millisecond, so trades sharing the millisecond at a page boundary may be skipped.",
		Tags: []string{"ticks"},
		Params: []Param{
			PathParam("exchange", "exchange name (okx)"),
			PathParam("symbol", "the exchange's symbol (BTC-USDT; Kraken's BTC/USD as BTC%2FUSD)"),
			QueryParam("limit", "how many trades, 1.."+strconv.Itoa(MaxTicksLimit)+" (default "+strconv.Itoa(DefaultTicksLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxTicksLimit, "default": DefaultTicksLimit}),
			QueryParam("from", "oldest trade time to include", timeSchema),
			QueryParam("to", "newest trade time to include", timeSchema),
			QueryParam("before", "paging cursor: only trades with timestamp < before (Unix ms)", Schema{"type": "integer", "format": "int64", "minimum": 1}),
		},
		Data: Schema{
			"type":     "object",
			"required": []string{"exchange", "symbol", "trades"},
			"properties": map[string]any{
				"exchange":    Schema{"type": "string"},
				"symbol":      Schema{"type": "string"},
				"trades":      ArrayOf(Ref("Trade")),
				"next_before": Schema{"type": "integer", "format": "int64", "description": "present when the page is full: pass it as before for the next page"},
			},
		},
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_limit, invalid_from, invalid_to, invalid_range (from after to) or invalid_before",
			503: "unavailable: no store configured, or the store could not answer; details.layers says why",
		},
	})
	defineSchema("Quote", Schema{
		"type":     "object",
		"required": []string{"exchange", "symbol", "bid", "bid_size", "ask", "ask_size", "timestamp"},
		"properties": map[string]any{
			"exchange":    Schema{"type": "string", "example": "kraken"},
			"symbol":      Schema{"type": "string", "example": "BTC/USD"},
			"base":        str("normalized base asset, when the symbol resolved"),
			"quote":       str("normalized quote asset"),
			"bid":         str("best bid, exact decimal"),
			"bid_size":    str("size at the best bid"),
			"ask":         str("best ask, exact decimal"),
			"ask_size":    str("size at the best ask"),
			"timestamp":   Schema{"type": "integer", "format": "int64", "description": "exchange time, Unix ms"},
			"received_at": Schema{"type": "integer", "format": "int64", "description": "when tickflow read it, Unix µs"},
		},
	})
	describe("GET", "/api/v1/quotes/:exchange/:symbol", Operation{
		Summary: "A pair's recent best bid/ask quotes, newest first",
		Description: "From a bounded in-process list of the newest quotes of all pairs, read from the Kafka topic " + tick.QuoteTopic +
			" (sources with quotes: true publish there).",
		Tags: []string{"ticks"},
		Params: []Param{
			PathParam("exchange", "exchange name (kraken)"),
			PathParam("symbol", "the exchange's symbol (BTC-USDT; Kraken's BTC/USD as BTC%2FUSD)"),
			QueryParam("since", "only quotes at or after this event time", Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds"}),
			QueryParam("limit", "how many, 1.."+strconv.Itoa(MaxEventsLimit)+" (default "+strconv.Itoa(DefaultEventsLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxEventsLimit, "default": DefaultEventsLimit}),
		},
		Data: ArrayOf(Ref("Quote")),
		Errors: map[int]string{
			400: "invalid_exchange, invalid_symbol, invalid_since or invalid_limit",
			503: "unavailable: no quote feed behind this API",
		},
	})
}
