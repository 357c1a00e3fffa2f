package api

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/alert"
)

// AlertSource lists recent risk alerts: the risk sink implements it. since
// is event time in Unix ms; min "" means any severity; limit 0 means all it
// keeps. Newest first.
type AlertSource interface {
	RecentAlerts(since int64, min alert.Severity, limit int) []alert.Alert
}

// Limits of the alert and signal lists.
const (
	DefaultEventsLimit = 100
	MaxEventsLimit     = 1000
)

func init() {
	addRoutes(func(s *Server) { s.e.GET("/api/v1/alerts", s.getAlerts) })
	describeAlertRoutes()
}

func (s *Server) getAlerts(c echo.Context) error {
	limit, sinceMS, err := eventsQuery(c)
	if err != nil {
		return err
	}
	var min alert.Severity
	if v := c.QueryParam("severity"); v != "" {
		if min, err = alert.ParseSeverity(v); err != nil {
			return errorf(http.StatusBadRequest, "invalid_severity", err.Error())
		}
	}
	if s.opts.Alerts == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "no risk alerts are followed here (sinks.risk.enabled)")
	}
	out := s.opts.Alerts.RecentAlerts(sinceMS, min, limit)
	if out == nil {
		out = []alert.Alert{}
	}
	return ok(c, newestFirst(out, func(a alert.Alert) int64 { return a.Timestamp }, limit))
}

// eventsQuery parses the limit and since parameters the alert and signal
// lists share; since is Unix ms, 0 when absent.
func eventsQuery(c echo.Context) (limit int, sinceMS int64, err error) {
	limit = DefaultEventsLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxEventsLimit {
			return 0, 0, errorf(http.StatusBadRequest, "invalid_limit", fmt.Sprintf("limit %q: want an integer in 1..%d", v, MaxEventsLimit))
		}
		limit = n
	}
	since, err := timeParam(c, "since")
	if err != nil {
		return 0, 0, err
	}
	if !since.IsZero() {
		sinceMS = since.UnixMilli()
	}
	return limit, sinceMS, nil
}

// newestFirst orders events newest first and keeps at most limit, whatever
// order the source kept them in.
func newestFirst[T any](out []T, ts func(T) int64, limit int) []T {
	sort.SliceStable(out, func(i, j int) bool { return ts(out[i]) > ts(out[j]) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func describeAlertRoutes() {
	str := func(d string) Schema { return Schema{"type": "string", "description": d} }
	defineSchema("Alert", Schema{
		"type":     "object",
		"required": []string{"id", "rule", "status", "severity", "exchange", "symbol", "timestamp", "message"},
		"properties": map[string]any{
			"id": str("derived from the rule, the pair and the event time of the tick that fired it, so a replay gives the same id; " +
				"a resolution carries the id of the alert it resolves"),
			"rule":              Schema{"type": "string", "enum": []string{alert.PriceVolatility, alert.PriceVolatility24h, alert.StaleFeed, alert.CrossedBook, alert.PriceSpike}},
			"status":            Schema{"type": "string", "enum": []string{string(alert.Firing), string(alert.Resolved)}},
			"severity":          Schema{"type": "string", "enum": []string{string(alert.Info), string(alert.Warning), string(alert.Critical)}},
			"exchange":          Schema{"type": "string", "example": "binance"},
			"symbol":            Schema{"type": "string", "example": "BTCUSDT"},
			"timestamp":         Schema{"type": "integer", "format": "int64", "description": "event time (Unix ms) of the tick that fired or resolved it"},
			"message":           str("human-readable summary"),
			"change_percent":    str("volatility: the price change in percent, decimal string"),
			"window":            str("volatility: the window the change is over (5m0s, or 24h against the 24 h open)"),
			"from_price":        str("volatility: the price at the start of the window"),
			"to_price":          str("volatility: the price that fired it"),
			"bid":               str("crossed_book: best bid"),
			"ask":               str("crossed_book: best ask"),
			"last_tick":         Schema{"type": "integer", "format": "int64", "description": "stale_feed: event time of the pair's last tick"},
			"exchange_time":     Schema{"type": "integer", "format": "int64", "description": "stale_feed: the exchange's newest event time when the silence was noticed"},
			"price":             str("price_spike: this pair's price"),
			"reference":         str("price_spike: median of the other exchanges' latest prices"),
			"deviation_percent": str("price_spike: deviation from the reference in percent"),
			"others":            ArrayOf(Schema{"type": "string", "description": "price_spike: the exchanges compared against"}),
		},
	})
	describe("GET", "/api/v1/alerts", Operation{
		Summary: "Recent risk alerts, newest first",
		Description: "From the risk monitor's in-memory list of recent alerts (sinks.risk.recent). Every alert is also on the " +
			"Kafka topic " + alert.Topic + " and the push channel \"" + alert.Channel + "\".",
		Tags: []string{"risk"},
		Params: []Param{
			QueryParam("since", "only alerts with timestamp at or after this event time", Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds", "example": "2026-01-02T15:04:05Z"}),
			QueryParam("severity", "minimum severity", Schema{"type": "string", "enum": []string{string(alert.Info), string(alert.Warning), string(alert.Critical)}}),
			QueryParam("limit", "how many, 1.."+strconv.Itoa(MaxEventsLimit)+" (default "+strconv.Itoa(DefaultEventsLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxEventsLimit, "default": DefaultEventsLimit}),
		},
		Data: ArrayOf(Ref("Alert")),
		Errors: map[int]string{
			400: "invalid_since, invalid_severity or invalid_limit",
			503: "unavailable: the risk monitor is not running",
		},
	})
}
