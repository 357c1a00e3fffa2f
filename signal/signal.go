// Package signal is the strategy engine's output: the Signal value published
// to the strategy.signals topic, which the push sink's "signal" channel and
// the REST API's recent list read. It imports only tick, so consumers of
// signals do not depend on the engine that produces them.
package signal

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/tickflow/tickflow/tick"
)

// Topic is the Kafka topic signals are published to, keyed "exchange:symbol".
const Topic = "strategy.signals"

// Channel is the push sink channel signals are fanned out on.
const Channel = "signal"

// Side is the direction a signal points.
type Side string

const (
	Buy  Side = "buy"
	Sell Side = "sell"
)

// ParseSide accepts buy or sell.
func ParseSide(s string) (Side, error) {
	switch Side(s) {
	case Buy, Sell:
		return Side(s), nil
	}
	return "", fmt.Errorf("side %q is not buy or sell", s)
}

// Signal is one decision of one strategy. Price is an exact decimal string.
// No order is ever placed from it; the engine's paper executor only
// simulates one.
type Signal struct {
	// ID is derived from the strategy, pair, side and the event time of the
	// tick that triggered it, so replays yield the same ID.
	ID       string `json:"id"`
	Strategy string `json:"strategy"`
	// Type is the strategy's type (price_cross, sma_cross, ...).
	Type     string `json:"type"`
	Exchange string `json:"exchange"`
	Symbol   string `json:"symbol"`
	Side     Side   `json:"side"`
	Price    string `json:"price"`
	Reason   string `json:"reason"`
	// Timestamp is the event time (Unix ms) of the triggering tick.
	Timestamp int64 `json:"timestamp"`
}

// Key is the Kafka record key: "exchange:symbol".
func (s *Signal) Key() string { return s.Exchange + ":" + s.Symbol }

// ID derives a signal ID from what triggered it.
func ID(strategy string, p tick.Pair, side Side, at int64) string {
	h := sha256.New()
	for _, part := range []string{strategy, p.Exchange, p.Symbol, string(side)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(strconv.AppendInt(nil, at, 10))
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// StrategyStatus is one configured strategy as the API shows it: its
// configuration, its state, and its paper account.
type StrategyStatus struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Exchange string            `json:"exchange"`
	Symbol   string            `json:"symbol"`
	Params   map[string]string `json:"params"`
	// State is the strategy's own state (moving-average windows, the side
	// of the last cross, ...), as it is snapshotted.
	State json.RawMessage `json:"state"`
	// Signals counts the signals it has published.
	Signals int          `json:"signals"`
	Paper   PaperAccount `json:"paper"`
}

// PaperAccount is a strategy's simulated trading: every signal is filled at
// the triggering tick's price, no fees, no slippage; no order is placed.
// Decimals are exact strings.
type PaperAccount struct {
	Quantity   string `json:"quantity"`
	AllowShort bool   `json:"allow_short"`
	// Position is signed: negative is short.
	Position   string `json:"position"`
	EntryPrice string `json:"entry_price"`
	// MarkPrice is the pair's latest price, which UnrealizedPnL uses.
	MarkPrice     string `json:"mark_price"`
	RealizedPnL   string `json:"realized_pnl"`
	UnrealizedPnL string `json:"unrealized_pnl"`
	Fills         int    `json:"fills"`
}
