// Package bybit speaks Bybit's v5 public spot WebSocket format: the
// decoder for tickers, publicTrade and orderbook.1 (best bid/ask) and the
// control frames, and the subscribe, unsubscribe and ping messages. It is
// pure — no network; the connection manager dials, paces and keeps alive.
//
// Spot tickers carry no bid or ask, so Bybit ticks have zero Bid and Ask
// (the tick codec writes them as "0"; the risk engine's crossed-book rule
// skips zeros). The best bid/ask is orderbook.1, decoded into quotes.
package bybit

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Exchange is the exchange name on every record.
const Exchange = "bybit"

// Documented endpoint and limits (Bybit v5 "WebSocket Connect").
const (
	SpotURL = "wss://stream.bybit.com/v5/public/spot"

	// MaxArgsPerRequest: spot accepts at most 10 topics per subscribe.
	MaxArgsPerRequest = 10
	// MaxArgsCharsPerConn: the total length of all args subscribed on one
	// public connection.
	MaxArgsCharsPerConn = 21000
	// MaxConnectsPer5Min: new connections per IP within 5 minutes.
	MaxConnectsPer5Min = 500
	// PingInterval: send Ping this often or the server drops the
	// connection.
	PingInterval = 20 * time.Second
)

// Channels this package decodes; topics are "<channel>.<SYMBOL>".
const (
	Tickers = "tickers"
	Trades  = "publicTrade"
	Book1   = "orderbook.1"
)

// Topic is the subscription topic of channel for symbol: Topic(Tickers,
// "BTCUSDT") is "tickers.BTCUSDT".
func Topic(channel, symbol string) string { return channel + "." + symbol }

// splitTopic is Topic's inverse.
func splitTopic(topic string) (channel, symbol string, ok bool) {
	i := strings.LastIndexByte(topic, '.')
	if i <= 0 || i == len(topic)-1 {
		return "", "", false
	}
	return topic[:i], topic[i+1:], true
}

type request struct {
	ReqID string   `json:"req_id,omitempty"`
	Op    string   `json:"op"`
	Args  []string `json:"args,omitempty"`
}

// Subscribe is the subscribe request for up to MaxArgsPerRequest topics,
// with an optional req_id echoed in the response.
func Subscribe(reqID string, topics ...string) ([]byte, error) {
	return build(reqID, "subscribe", topics)
}

// Unsubscribe is the unsubscribe request for up to MaxArgsPerRequest
// topics.
func Unsubscribe(reqID string, topics ...string) ([]byte, error) {
	return build(reqID, "unsubscribe", topics)
}

func build(reqID, op string, topics []string) ([]byte, error) {
	switch {
	case len(topics) == 0:
		return nil, fmt.Errorf("bybit: %s with no topics", op)
	case len(topics) > MaxArgsPerRequest:
		return nil, fmt.Errorf("bybit: %s with %d topics; spot takes at most %d per request (see Batches)", op, len(topics), MaxArgsPerRequest)
	}
	return json.Marshal(request{reqID, op, topics})
}

// Batches splits topics into groups of at most MaxArgsPerRequest, one
// subscribe request each.
func Batches(topics []string) [][]string {
	var out [][]string
	for len(topics) > 0 {
		n := min(len(topics), MaxArgsPerRequest)
		out = append(out, topics[:n:n])
		topics = topics[n:]
	}
	return out
}

// Ping is Bybit's application keep-alive, {"op":"ping"}, with an optional
// req_id.
func Ping(reqID string) []byte {
	b, _ := json.Marshal(request{ReqID: reqID, Op: "ping"})
	return b
}
