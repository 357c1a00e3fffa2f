// Package tick is tickflow's market-data value type and its wire codec.
//
// It sits at the bottom of the import graph: every other package imports it
// and it imports nothing of ours. Prices and sizes are apd.Decimal end to end;
// a float64 never touches them, so "50100.00" leaves exactly as it arrived.
package tick

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Tick is one price update for one pair on one exchange.
type Tick struct {
	Exchange string // lower-case exchange name: "binance", "sim"
	Symbol   string // upper-case pair as the exchange names it: "BTCUSDT"

	// Base and Quote are the normalized assets of Symbol ("BTC", "USDT";
	// Kraken's XBT/USD is BTC and USD), so one instrument can be asked for
	// across exchanges. The ingest pump fills them from the instrument
	// resolver; both are empty when the symbol did not resolve, and in
	// records written before they existed.
	Base, Quote string

	// Timestamp is the exchange's event time in Unix milliseconds. Ordering,
	// windows and deduplication all use it, never the local clock.
	Timestamp int64

	Price  apd.Decimal // last traded price
	Volume apd.Decimal // rolling 24 h base-asset volume
	Bid    apd.Decimal // best bid
	Ask    apd.Decimal // best ask

	// Rolling 24 h figures, zero where the source does not give them.
	Open24h     apd.Decimal
	High24h     apd.Decimal
	Low24h      apd.Decimal
	QuoteVolume apd.Decimal

	// ReceivedAt is when tickflow read the frame off the socket, in Unix
	// microseconds: millisecond latency budgets need a finer clock than ms.
	ReceivedAt int64
}

// Key is the Kafka record key, "exchange:symbol". Keying by pair keeps each
// pair ordered within one partition.
func (t *Tick) Key() string { return t.Exchange + ":" + t.Symbol }

// AppendKey appends the record key to b without allocating a string.
func (t *Tick) AppendKey(b []byte) []byte {
	b = append(b, t.Exchange...)
	b = append(b, ':')
	return append(b, t.Symbol...)
}

// Pair identifies a market: one symbol on one exchange.
type Pair struct {
	Exchange string
	Symbol   string
}

// Instrument is the normalized "BASE-QUOTE" ("BTC-USDT"), or "" when the
// tick carries no assets.
func (t *Tick) Instrument() string {
	if t.Base == "" {
		return ""
	}
	return t.Base + "-" + t.Quote
}

// Pair returns the tick's pair.
func (t *Tick) Pair() Pair { return Pair{t.Exchange, t.Symbol} }

func (p Pair) String() string { return p.Exchange + ":" + p.Symbol }

// EventTime is Timestamp as a time.Time.
func (t *Tick) EventTime() time.Time { return time.UnixMilli(t.Timestamp) }

// ReceiveTime is ReceivedAt as a time.Time.
func (t *Tick) ReceiveTime() time.Time { return time.UnixMicro(t.ReceivedAt) }

// Errors returned by Validate.
var (
	ErrNoExchange = errors.New("tick: empty exchange")
	ErrNoSymbol   = errors.New("tick: empty symbol")
	ErrNoTime     = errors.New("tick: missing event timestamp")
	ErrBadPrice   = errors.New("tick: price must be a finite positive decimal")
	ErrNotFinite  = errors.New("tick: decimal field is not finite")
	ErrHalfAssets = errors.New("tick: base and quote must both be set or both be empty")
)

// Validate reports whether the tick is fit to publish: identity present, a
// positive finite price, every decimal finite.
func (t *Tick) Validate() error {
	switch {
	case t.Exchange == "":
		return ErrNoExchange
	case t.Symbol == "":
		return ErrNoSymbol
	case t.Timestamp <= 0:
		return ErrNoTime
	case t.Price.Form != apd.Finite || t.Price.Sign() <= 0:
		return ErrBadPrice
	case (t.Base == "") != (t.Quote == ""):
		return ErrHalfAssets
	}
	for _, d := range []*apd.Decimal{&t.Volume, &t.Bid, &t.Ask, &t.Open24h, &t.High24h, &t.Low24h, &t.QuoteVolume} {
		if d.Form != apd.Finite {
			return ErrNotFinite
		}
	}
	return nil
}

// NormalizeExchange is the canonical spelling of an exchange name.
func NormalizeExchange(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// NormalizeSymbol is the canonical spelling of a symbol.
func NormalizeSymbol(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// ParseDecimal parses an exchange's decimal text exactly. It refuses NaN,
// infinities and empty strings, which apd would otherwise accept or which
// exchanges send where a number is missing.
func ParseDecimal(d *apd.Decimal, s string) error {
	if s == "" {
		return errors.New("empty decimal")
	}
	if parseDecimalFast(d, s) {
		return nil
	}
	if _, _, err := d.SetString(s); err != nil {
		return fmt.Errorf("bad decimal %q", s)
	}
	if d.Form != apd.Finite {
		return fmt.Errorf("decimal %q is not finite", s)
	}
	return nil
}

// MustDecimal parses s or panics; for tests and constants.
func MustDecimal(s string) apd.Decimal {
	var d apd.Decimal
	if err := ParseDecimal(&d, s); err != nil {
		panic(err)
	}
	return d
}
