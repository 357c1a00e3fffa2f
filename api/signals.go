package api

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/signal"
)

// SignalSource is the strategy engine as the API sees it: the strategy
// sink implements it. RecentSignals answers newest first; strategy ""
// means all, since is event time in Unix ms, limit 0 means all it keeps.
type SignalSource interface {
	RecentSignals(strategy string, since int64, limit int) []signal.Signal
	Strategies() []signal.StrategyStatus
}

func init() {
	addRoutes(func(s *Server) {
		s.e.GET("/api/v1/signals", s.getSignals)
		s.e.GET("/api/v1/strategies", s.getStrategies)
	})
	describeSignalRoutes()
}

func (s *Server) getSignals(c echo.Context) error {
	limit, sinceMS, err := eventsQuery(c)
	if err != nil {
		return err
	}
	name := c.QueryParam("strategy")
	if len(name) > 256 {
		return errorf(http.StatusBadRequest, "invalid_strategy", "strategy: longer than 256 bytes")
	}
	src := s.opts.Signals
	if src == nil {
		return errNoSignals()
	}
	if name != "" && !configured(src, name) {
		return errorf(http.StatusNotFound, "strategy_not_found", fmt.Sprintf("no strategy named %q is configured", name))
	}
	out := src.RecentSignals(name, sinceMS, limit)
	if out == nil {
		out = []signal.Signal{}
	}
	return ok(c, newestFirst(out, func(s signal.Signal) int64 { return s.Timestamp }, limit))
}

func errNoSignals() error {
	return errorf(http.StatusServiceUnavailable, "unavailable", "no strategy signals are followed here (sinks.strategy.enabled)")
}

func configured(src SignalSource, name string) bool {
	for _, st := range src.Strategies() {
		if st.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) getStrategies(c echo.Context) error {
	if s.opts.Signals == nil {
		return errNoSignals()
	}
	out := s.opts.Signals.Strategies()
	if out == nil {
		out = []signal.StrategyStatus{}
	}
	return ok(c, out)
}

func describeSignalRoutes() {
	str := func(d string) Schema { return Schema{"type": "string", "description": d} }
	defineSchema("Signal", Schema{
		"type":     "object",
		"required": []string{"id", "strategy", "type", "exchange", "symbol", "side", "price", "reason", "timestamp"},
		"properties": map[string]any{
			"id":        str("derived from the strategy, pair, side and event time of the triggering tick, so a replay gives the same id"),
			"strategy":  str("the strategy's configured name"),
			"type":      Schema{"type": "string", "example": "sma_cross"},
			"exchange":  Schema{"type": "string", "example": "binance"},
			"symbol":    Schema{"type": "string", "example": "BTCUSDT"},
			"side":      Schema{"type": "string", "enum": []string{string(signal.Buy), string(signal.Sell)}},
			"price":     Schema{"type": "string", "description": "the triggering tick's price, decimal string; the paper executor fills at it", "example": "50100.00"},
			"reason":    str("human-readable explanation"),
			"timestamp": Schema{"type": "integer", "format": "int64", "description": "event time (Unix ms) of the triggering tick"},
		},
	})
	defineSchema("PaperAccount", Schema{
		"type":        "object",
		"description": "Simulated trading of one strategy: fills at the signal price, no fees; no order is ever placed.",
		"properties": map[string]any{
			"quantity":       str("position size per signal"),
			"allow_short":    Schema{"type": "boolean"},
			"position":       str("signed position, negative is short"),
			"entry_price":    str("entry price of the open position"),
			"mark_price":     str("the pair's latest price"),
			"realized_pnl":   str("PnL of closed positions, decimal string"),
			"unrealized_pnl": str("PnL of the open position at mark_price"),
			"fills":          Schema{"type": "integer"},
		},
	})
	defineSchema("Strategy", Schema{
		"type":     "object",
		"required": []string{"name", "type", "exchange", "symbol", "params", "state", "signals", "paper"},
		"properties": map[string]any{
			"name":     Schema{"type": "string"},
			"type":     Schema{"type": "string", "enum": []string{"price_cross", "sma_cross", "breakout", "momentum"}, "description": "built-in types; others may be compiled in"},
			"exchange": Schema{"type": "string"},
			"symbol":   Schema{"type": "string"},
			"params":   Schema{"type": "object", "additionalProperties": Schema{"type": "string"}, "description": "the type's parameters as configured"},
			"state":    Schema{"type": "object", "description": "the strategy's own state (windows, last cross side), as snapshotted"},
			"signals":  Schema{"type": "integer", "description": "signals published"},
			"paper":    Ref("PaperAccount"),
		},
	})
	limit := QueryParam("limit", "how many, 1.."+strconv.Itoa(MaxEventsLimit)+" (default "+strconv.Itoa(DefaultEventsLimit)+")",
		Schema{"type": "integer", "minimum": 1, "maximum": MaxEventsLimit, "default": DefaultEventsLimit})
	describe("GET", "/api/v1/signals", Operation{
		Summary: "Recent strategy signals, newest first",
		Description: "From the strategy engine's in-memory list of recent signals (sinks.strategy.recent). Every signal is also on " +
			"the Kafka topic " + signal.Topic + " and the push channel \"" + signal.Channel + "\".",
		Tags: []string{"strategy"},
		Params: []Param{
			QueryParam("strategy", "only this strategy's signals", Schema{"type": "string"}),
			QueryParam("since", "only signals with timestamp at or after this event time", Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}),
			limit,
		},
		Data: ArrayOf(Ref("Signal")),
		Errors: map[int]string{
			400: "invalid_strategy, invalid_since or invalid_limit",
			404: "strategy_not_found: no strategy of that name is configured",
			503: "unavailable: the strategy engine is not running",
		},
	})
	describe("GET", "/api/v1/strategies", Operation{
		Summary: "Configured strategies with their state and paper PnL",
		Tags:    []string{"strategy"},
		Data:    ArrayOf(Ref("Strategy")),
		Errors:  map[int]string{503: "unavailable: the strategy engine is not running"},
	})
}
