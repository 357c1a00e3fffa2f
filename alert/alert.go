// Package alert is the risk monitor's output: the Alert value published to
// the risk.alerts topic (which the push sink's "alert" channel and the REST
// API's recent list read) and to webhooks. It imports only tick, so every
// consumer of alerts can read them without depending on the sink that
// raises them.
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/tickflow/tickflow/tick"
)

// Topic is the Kafka topic alerts are published to, keyed "exchange:symbol".
const Topic = "risk.alerts"

// Channel is the push sink channel alerts are fanned out on.
const Channel = "alert"

// Rule names.
const (
	PriceVolatility    = "price_volatility"
	PriceVolatility24h = "price_volatility_24h"
	StaleFeed          = "stale_feed"
	CrossedBook        = "crossed_book"
	PriceSpike         = "price_spike"
)

// Status says whether an alert's condition started or cleared.
type Status string

const (
	Firing   Status = "firing"
	Resolved Status = "resolved"
)

// Severity orders alerts: info < warning < critical.
type Severity string

const (
	Info     Severity = "info"
	Warning  Severity = "warning"
	Critical Severity = "critical"
)

// Rank orders severities; an unknown severity ranks 0.
func (s Severity) Rank() int {
	switch s {
	case Info:
		return 1
	case Warning:
		return 2
	case Critical:
		return 3
	}
	return 0
}

// ParseSeverity accepts info, warning or critical.
func ParseSeverity(s string) (Severity, error) {
	if v := Severity(s); v.Rank() > 0 {
		return v, nil
	}
	return "", fmt.Errorf("severity %q is not info, warning or critical", s)
}

// Alert is one firing or resolution of a risk rule for one pair. Decimal
// values are exact decimal strings, as in the tick codec; fields a rule does
// not use are omitted.
type Alert struct {
	// ID is derived from the rule, the pair and the event time of the tick
	// that fired it, so a replay of the same ticks yields the same ID. A
	// resolution carries the ID of the alert it resolves.
	ID       string   `json:"id"`
	Rule     string   `json:"rule"`
	Status   Status   `json:"status"`
	Severity Severity `json:"severity"`
	Exchange string   `json:"exchange"`
	Symbol   string   `json:"symbol"`
	// Timestamp is the event time (Unix ms) of the tick that fired or
	// resolved the alert.
	Timestamp int64  `json:"timestamp"`
	Message   string `json:"message"`

	// Volatility: the move from FromPrice to ToPrice over Window.
	ChangePercent string `json:"change_percent,omitempty"`
	Window        string `json:"window,omitempty"`
	FromPrice     string `json:"from_price,omitempty"`
	ToPrice       string `json:"to_price,omitempty"`

	// Crossed or locked book.
	Bid string `json:"bid,omitempty"`
	Ask string `json:"ask,omitempty"`

	// Stale feed: the pair's last tick and the exchange's newest event.
	LastTick     int64 `json:"last_tick,omitempty"`
	ExchangeTime int64 `json:"exchange_time,omitempty"`

	// Price spike: this pair's price against the median of the same
	// symbol's latest prices on other exchanges.
	Price            string   `json:"price,omitempty"`
	Reference        string   `json:"reference,omitempty"`
	DeviationPercent string   `json:"deviation_percent,omitempty"`
	Others           []string `json:"others,omitempty"`
}

// Key is the Kafka record key: "exchange:symbol".
func (a *Alert) Key() string { return a.Exchange + ":" + a.Symbol }

// Pair is the alert's market.
func (a *Alert) Pair() tick.Pair { return tick.Pair{Exchange: a.Exchange, Symbol: a.Symbol} }

// DedupKey identifies one event: an alert's firing and its resolution share
// an ID but are distinct events.
func (a *Alert) DedupKey() string { return a.ID + "/" + string(a.Status) }

// ID derives an alert ID from what fired it. The same rule on the same pair
// fired by the tick at the same event time always gets the same ID.
func ID(rule string, p tick.Pair, at int64) string {
	h := sha256.New()
	h.Write([]byte(rule))
	h.Write([]byte{0})
	h.Write([]byte(p.Exchange))
	h.Write([]byte{0})
	h.Write([]byte(p.Symbol))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, at, 10))
	return hex.EncodeToString(h.Sum(nil)[:12])
}
