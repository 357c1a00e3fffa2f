package tick

import (
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Gap is a stretch of one pair's data a source knows it did not deliver:
// gaps are data, not silence. A connection that dropped leaves one per pair
// it carried, from the pair's last record before the drop to its first
// after; a sequence that jumped (a trade id, a book sequence) leaves one
// for the stream it jumped on.
type Gap struct {
	Exchange string `json:"exchange"`
	Symbol   string `json:"symbol"`
	// Channel is the exchange's channel the sequence jumped on ("trades",
	// "matches"); empty for a connection drop, which loses every channel.
	Channel string `json:"channel,omitempty"`
	// From and To bound the gap in exchange time, Unix ms: the last record
	// seen before it and the first after it.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// Reason is GapReconnect or GapSequence; Cause says more: the reason
	// the connection ended ("stale", "closed_by_server", "server_notice"),
	// or the sequence field that jumped ("tradeId", "trade_id").
	Reason string `json:"reason"`
	Cause  string `json:"cause,omitempty"`
	// FromSeq and ToSeq are the sequence values either side of a sequence
	// gap: the values in between were not received.
	FromSeq uint64 `json:"from_seq,omitempty"`
	ToSeq   uint64 `json:"to_seq,omitempty"`
	// DetectedAt is when tickflow noticed, Unix µs.
	DetectedAt int64 `json:"detected_at"`
}

// GapTopic is the topic gap records are published on, keyed
// exchange:symbol.
const GapTopic = "market_data.gaps"

// ID identifies a gap, so a re-read of the topic keeps it once.
func (g *Gap) ID() string {
	return g.Exchange + ":" + g.Symbol + ":" + g.Channel + ":" + g.Reason + ":" +
		strconv.FormatInt(g.From, 10) + "-" + strconv.FormatInt(g.To, 10)
}

// Gap reasons.
const (
	GapReconnect = "reconnect" // the connection carrying the pair dropped
	GapSequence  = "sequence"  // the exchange's sequence skipped values
)

// ErrBadGap is returned by Gap.Validate.
var ErrBadGap = errors.New("tick: gap needs an exchange, a symbol, a reason and from <= to")

// Validate reports whether g is a usable gap record.
func (g *Gap) Validate() error {
	if g.Exchange == "" || g.Symbol == "" || g.Reason == "" || g.From > g.To || g.From < 0 {
		return ErrBadGap
	}
	return nil
}

// Key is the record key, "exchange:symbol", as for ticks.
func (g *Gap) Key() string { return g.Exchange + ":" + g.Symbol }

// Duration is how long the gap lasted in exchange time.
func (g *Gap) Duration() time.Duration { return time.Duration(g.To-g.From) * time.Millisecond }

// EventTime is the gap's end: when the data came back.
func (g *Gap) EventTime() time.Time { return time.UnixMilli(g.To) }

// MarshalGap encodes g as the JSON of the gaps topic.
func MarshalGap(g *Gap) ([]byte, error) { return json.Marshal(g) }

// UnmarshalGap decodes a gaps topic record and validates it.
func UnmarshalGap(b []byte) (Gap, error) {
	var g Gap
	if err := json.Unmarshal(b, &g); err != nil {
		return Gap{}, err
	}
	return g, g.Validate()
}
