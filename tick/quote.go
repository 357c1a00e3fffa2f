package tick

import (
	"encoding/json"

	"github.com/cockroachdb/apd/v3"
)

// Quote is a best bid/ask (top of book) update, on the topic QuoteTopic. Book updates are their own
// record rather than folded into ticks: a tick's Price is a last trade
// price, which a book update does not have, and folding needs per-pair
// state the decoder does not keep.
type Quote struct {
	Exchange   string      `json:"exchange"`
	Symbol     string      `json:"symbol"`
	Base       string      `json:"base,omitempty"` // normalized; empty when the symbol did not resolve
	Quote      string      `json:"quote,omitempty"`
	Bid        apd.Decimal `json:"bid"`
	BidSize    apd.Decimal `json:"bid_size"`
	Ask        apd.Decimal `json:"ask"`
	AskSize    apd.Decimal `json:"ask_size"`
	Timestamp  int64       `json:"timestamp"`   // exchange time, Unix ms
	ReceivedAt int64       `json:"received_at"` // Unix µs
}

// Validate reports whether q is usable: identity, time, and a positive bid
// and ask (a one-sided book is refused: the decoders do not emit half
// quotes).
func (q *Quote) Validate() error {
	switch {
	case q.Exchange == "":
		return ErrNoExchange
	case q.Symbol == "":
		return ErrNoSymbol
	case q.Timestamp <= 0:
		return ErrNoTime
	}
	for _, d := range []*apd.Decimal{&q.Bid, &q.Ask} {
		if d.Form != apd.Finite || d.Sign() <= 0 {
			return ErrBadPrice
		}
	}
	for _, d := range []*apd.Decimal{&q.BidSize, &q.AskSize} {
		if d.Form != apd.Finite || d.Sign() < 0 {
			return ErrNotFinite
		}
	}
	return nil
}

// QuoteTopic is the topic quotes are published on, keyed exchange:symbol.
const QuoteTopic = "market_data.quotes"

// Key is the record key, "exchange:symbol", as for ticks.
func (q *Quote) Key() string { return q.Exchange + ":" + q.Symbol }

// MarshalQuote encodes q as the JSON of the quotes topic (decimals as
// strings, exactly).
func MarshalQuote(q *Quote) ([]byte, error) { return json.Marshal(q) }

// UnmarshalQuote decodes a quotes topic record and validates it.
func UnmarshalQuote(b []byte) (Quote, error) {
	var q Quote
	if err := json.Unmarshal(b, &q); err != nil {
		return Quote{}, err
	}
	return q, q.Validate()
}
