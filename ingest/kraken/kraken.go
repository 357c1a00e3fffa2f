// Package kraken speaks Kraken's spot WebSocket v2 format: the decoder for
// the ticker and trade channels and the control frames (subscribe and
// unsubscribe acks, heartbeat, pong, status), and the subscribe,
// unsubscribe and ping messages. It is pure — no network; the connection
// manager dials, paces and keeps alive.
//
// Kraken v2 sends prices and sizes as JSON numbers. The decoder keeps each
// number's literal text and parses it to an apd.Decimal, so 740.0 stays
// 740.0 and 0.10025 is exactly 0.10025; nothing goes through float64.
//
// The ticker carries the best bid and ask with their sizes, so it yields a
// tick and a quote per entry; there is no separate book channel to follow.
package kraken

import (
	"encoding/json"
	"fmt"
	"time"
)

// Exchange is the exchange name on every record.
const Exchange = "kraken"

// Documented endpoint and behaviour (Kraken "Spot WebSocket v2").
const (
	URL = "wss://ws.kraken.com/v2"
	// HeartbeatEvery: the server sends a heartbeat about once a second on
	// a connection with subscriptions when nothing else flows, so a
	// connection silent for a few seconds is stale.
	HeartbeatEvery = time.Second
)

// Channels this package decodes.
const (
	Ticker = "ticker"
	Trade  = "trade"
)

// Params are a subscription's parameters.
type Params struct {
	Channel string   `json:"channel"`
	Symbols []string `json:"symbol"`
	// Snapshot asks for (true) or declines (false) the initial snapshot;
	// nil leaves Kraken's default (true).
	Snapshot *bool `json:"snapshot,omitempty"`
	// EventTrigger, for ticker only: "trades" (default: on every trade) or
	// "bbo" (on every best bid/ask change).
	EventTrigger string `json:"event_trigger,omitempty"`
}

type request struct {
	Method string  `json:"method"`
	Params *Params `json:"params,omitempty"`
	ReqID  int64   `json:"req_id,omitempty"`
}

// Subscribe is the subscribe request; reqID (0: none) is echoed in the
// acks.
func Subscribe(p Params, reqID int64) ([]byte, error) { return build("subscribe", p, reqID) }

// Unsubscribe is the unsubscribe request.
func Unsubscribe(p Params, reqID int64) ([]byte, error) {
	p.Snapshot, p.EventTrigger = nil, ""
	return build("unsubscribe", p, reqID)
}

func build(method string, p Params, reqID int64) ([]byte, error) {
	if p.Channel == "" || len(p.Symbols) == 0 {
		return nil, fmt.Errorf("kraken: %s needs a channel and symbols", method)
	}
	return json.Marshal(request{method, &p, reqID})
}

// Ping is the application-level ping, answered by a pong frame echoing
// reqID (0: none).
func Ping(reqID int64) []byte {
	b, _ := json.Marshal(request{Method: "ping", ReqID: reqID})
	return b
}
