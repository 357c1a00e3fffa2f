package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/tickflow/tickflow/tick"
)

// GapSource lists recent gaps in the sources' data (tick.Gap): the gap
// feed implements it. since is the gap's end in Unix ms; exchange "" means
// any.
type GapSource interface {
	RecentGaps(since int64, exchange string) []tick.Gap
}

func init() {
	addRoutes(func(s *Server) { s.e.GET("/api/v1/gaps", s.getGaps) })
	describeGapRoutes()
}

func (s *Server) getGaps(c echo.Context) error {
	limit, sinceMS, err := eventsQuery(c)
	if err != nil {
		return err
	}
	ex := c.QueryParam("exchange")
	if ex != "" {
		if !validName(ex) {
			return errorf(http.StatusBadRequest, "invalid_exchange", "exchange "+strconv.Quote(ex))
		}
		ex = tick.NormalizeExchange(ex)
	}
	if s.opts.Gaps == nil {
		return errorf(http.StatusServiceUnavailable, "unavailable", "no gap feed is followed here")
	}
	out := s.opts.Gaps.RecentGaps(sinceMS, ex)
	if out == nil {
		out = []tick.Gap{}
	}
	return ok(c, newestFirst(out, func(g tick.Gap) int64 { return g.To }, limit))
}

func describeGapRoutes() {
	str := func(d string) Schema { return Schema{"type": "string", "description": d} }
	i64 := func(d string) Schema { return Schema{"type": "integer", "format": "int64", "description": d} }
	defineSchema("Gap", Schema{
		"type":     "object",
		"required": []string{"exchange", "symbol", "from", "to", "reason", "detected_at"},
		"properties": map[string]any{
			"exchange":    Schema{"type": "string", "example": "okx"},
			"symbol":      Schema{"type": "string", "example": "BTC-USDT"},
			"channel":     str("the channel a sequence jumped on; absent for a dropped connection"),
			"from":        i64("event time (Unix ms) of the pair's last record before the gap"),
			"to":          i64("event time (Unix ms) of its first record after"),
			"reason":      Schema{"type": "string", "enum": []string{tick.GapReconnect, tick.GapSequence}},
			"cause":       str("why the connection ended (stale, closed_by_server, server_notice, …) or the sequence field that jumped"),
			"from_seq":    i64("sequence gaps: the last value before"),
			"to_seq":      i64("sequence gaps: the first value after"),
			"detected_at": i64("when tickflow noticed, Unix µs"),
		},
	})
	describe("GET", "/api/v1/gaps", Operation{
		Summary: "Recent gaps in the ingested data, newest first",
		Description: "Every dropped connection leaves a gap per pair it carried, from the pair's last tick before the drop " +
			"to its first after; a sequence jump leaves one for its stream. Read from the Kafka topic " + tick.GapTopic + ".",
		Tags: []string{"ingest"},
		Params: []Param{
			QueryParam("since", "only gaps that ended at or after this event time", Schema{"type": "string", "description": "RFC 3339 time or Unix milliseconds"}),
			QueryParam("exchange", "only this exchange's", Schema{"type": "string", "example": "kraken"}),
			QueryParam("limit", "how many, 1.."+strconv.Itoa(MaxEventsLimit)+" (default "+strconv.Itoa(DefaultEventsLimit)+")",
				Schema{"type": "integer", "minimum": 1, "maximum": MaxEventsLimit, "default": DefaultEventsLimit}),
		},
		Data: ArrayOf(Ref("Gap")),
		Errors: map[int]string{
			400: "invalid_since, invalid_exchange or invalid_limit",
			503: "unavailable: no gap feed behind this API",
		},
	})
}
