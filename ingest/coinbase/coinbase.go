// Package coinbase speaks Coinbase's public market-data WebSocket formats,
// both of them, and tells them apart frame by frame:
//
//   - Coinbase Exchange (wss://ws-feed.exchange.coinbase.com): ticker
//     (last price, 24 h figures and best bid/ask), matches (trades; also the
//     last_match sent on subscribe) and heartbeat, each message a flat
//     object with "type"; every message carries the product's sequence.
//   - Coinbase Advanced Trade (wss://advanced-trade-ws.coinbase.com, the
//     format of shared/exchange-samples/coinbase.jsonl): ticker,
//     ticker_batch and heartbeats, each message an envelope with "channel"
//     and "events".
//
// Trades come from Exchange matches, whose side is the maker's: the
// decoder inverts it to the taker's. Advanced Trade's market_trades
// channel is not decoded: its documentation does not say whose side its
// side field is, and a guessed taker side is worse than none.
//
// The package is pure — no network; the connection manager dials, paces
// and keeps alive (Coinbase has no application ping: subscribe the
// heartbeat channel, which also keeps quiet Advanced Trade channels open).
package coinbase

import (
	"encoding/json"
	"fmt"
	"time"
)

// Exchange is the exchange name on every record, whichever format.
const Exchange = "coinbase"

// Endpoints and documented limits.
const (
	ExchangeURL = "wss://ws-feed.exchange.coinbase.com"
	AdvancedURL = "wss://advanced-trade-ws.coinbase.com"

	// SubscribeWithin: both feeds disconnect a client that has not
	// subscribed this soon after connecting.
	SubscribeWithin = 5 * time.Second
	// Exchange: connection requests per second per IP, with bursts up to
	// ConnectBurst; messages a client may send per second.
	ConnectsPerSecond = 8
	ConnectBurst      = 20
	MessagesPerSecond = 100
	// AdvancedIdleClose: Advanced Trade closes a channel with no updates
	// after 60–90 s unless the heartbeats channel is subscribed too.
	AdvancedIdleClose = 60 * time.Second
)

// Channel names. Exchange and Advanced Trade spell the heartbeat
// differently.
const (
	Ticker      = "ticker"
	Matches     = "matches"
	Heartbeat   = "heartbeat"  // Exchange
	Heartbeats  = "heartbeats" // Advanced Trade
	TickerBatch = "ticker_batch"
)

type exchangeRequest struct {
	Type       string   `json:"type"`
	ProductIDs []string `json:"product_ids"`
	Channels   []string `json:"channels"`
}

// Subscribe is the Exchange subscribe message: every channel for every
// product, in one message.
func Subscribe(productIDs []string, channels ...string) ([]byte, error) {
	return buildExchange("subscribe", productIDs, channels)
}

// Unsubscribe is the Exchange unsubscribe message; Coinbase answers it
// with the remaining subscriptions.
func Unsubscribe(productIDs []string, channels ...string) ([]byte, error) {
	return buildExchange("unsubscribe", productIDs, channels)
}

func buildExchange(typ string, productIDs, channels []string) ([]byte, error) {
	if len(productIDs) == 0 || len(channels) == 0 {
		return nil, fmt.Errorf("coinbase: %s needs products and channels", typ)
	}
	return json.Marshal(exchangeRequest{typ, productIDs, channels})
}

type advancedRequest struct {
	Type       string   `json:"type"`
	ProductIDs []string `json:"product_ids,omitempty"`
	Channel    string   `json:"channel"`
	JWT        string   `json:"jwt,omitempty"`
}

// SubscribeAdvanced is the Advanced Trade subscribe message, one channel
// per message as Advanced Trade requires. jwt may be empty: public market
// data needs none. Heartbeats takes no products.
func SubscribeAdvanced(channel string, productIDs []string, jwt string) ([]byte, error) {
	return buildAdvanced("subscribe", channel, productIDs, jwt)
}

// UnsubscribeAdvanced is the Advanced Trade unsubscribe message.
func UnsubscribeAdvanced(channel string, productIDs []string, jwt string) ([]byte, error) {
	return buildAdvanced("unsubscribe", channel, productIDs, jwt)
}

func buildAdvanced(typ, channel string, productIDs []string, jwt string) ([]byte, error) {
	if channel == "" || channel != Heartbeats && len(productIDs) == 0 {
		return nil, fmt.Errorf("coinbase: %s needs a channel and, but for heartbeats, products", typ)
	}
	return json.Marshal(advancedRequest{typ, productIDs, channel, jwt})
}
