package tick

import (
	"errors"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Side is the taker's side of a trade: the side of the order that crossed
// the spread. Every exchange's own convention is normalized to it in the
// exchange's decoder:
//
//   - Binance: m (buyer is maker) true → sell, false → buy.
//   - OKX v5 trades: side is the taker's side; kept.
//   - Bybit v5 publicTrade: S ("Buy"/"Sell") is the taker's side; lower-cased.
//   - Coinbase Exchange matches: side is the maker's side; inverted.
//   - Kraken v2 trade: side is the taker's side; kept.
type Side string

// The two taker sides.
const (
	Buy  Side = "buy"
	Sell Side = "sell"
)

// Opposite is the other side; a maker's side turns into the taker's.
func (s Side) Opposite() Side {
	switch s {
	case Buy:
		return Sell
	case Sell:
		return Buy
	}
	return s
}

// Valid reports whether s is Buy or Sell.
func (s Side) Valid() bool { return s == Buy || s == Sell }

// Trade is one public trade (a match) of one pair on one exchange.
type Trade struct {
	Exchange string // lower-case exchange name: "okx", "kraken"
	Symbol   string // the pair as the exchange names it: "BTC-USDT", "BTC/USD", "BTCUSDT"

	// Base and Quote are the normalized assets ("BTC", "USDT"), so one
	// instrument can be asked for across exchanges. Empty when the
	// exchange's symbol could not be normalized.
	Base, Quote string

	Price apd.Decimal // execution price, in Quote
	Size  apd.Decimal // executed quantity, in Base
	Side  Side        // the taker's side

	// TradeID is the exchange's own trade identifier, kept as text: OKX,
	// Coinbase and Kraken send integers, Bybit sends UUIDs or long digit
	// strings.
	TradeID string

	// Timestamp is the exchange's trade (match) time in Unix milliseconds.
	Timestamp int64
	// ReceivedAt is when tickflow read the frame off the socket, in Unix
	// microseconds.
	ReceivedAt int64
}

// Key is the Kafka record key, "exchange:symbol", as for ticks: one pair's
// trades stay ordered within one partition.
func (t *Trade) Key() string { return t.Exchange + ":" + t.Symbol }

// AppendKey appends the record key to b.
func (t *Trade) AppendKey(b []byte) []byte {
	b = append(b, t.Exchange...)
	b = append(b, ':')
	return append(b, t.Symbol...)
}

// Pair returns the trade's pair.
func (t *Trade) Pair() Pair { return Pair{t.Exchange, t.Symbol} }

// EventTime is Timestamp as a time.Time.
func (t *Trade) EventTime() time.Time { return time.UnixMilli(t.Timestamp) }

// Errors returned by Trade.Validate besides the Tick ones it shares.
var (
	ErrBadSize   = errors.New("tick: trade size must be a finite positive decimal")
	ErrBadSide   = errors.New("tick: trade side must be buy or sell")
	ErrNoTradeID = errors.New("tick: empty trade id")
)

// Validate reports whether the trade is fit to publish: identity present, a
// positive finite price and size, a taker side and a trade id.
func (t *Trade) Validate() error {
	switch {
	case t.Exchange == "":
		return ErrNoExchange
	case t.Symbol == "":
		return ErrNoSymbol
	case t.Timestamp <= 0:
		return ErrNoTime
	case t.Price.Form != apd.Finite || t.Price.Sign() <= 0:
		return ErrBadPrice
	case t.Size.Form != apd.Finite || t.Size.Sign() <= 0:
		return ErrBadSize
	case !t.Side.Valid():
		return ErrBadSide
	case t.TradeID == "":
		return ErrNoTradeID
	case (t.Base == "") != (t.Quote == ""):
		return ErrHalfAssets
	}
	return nil
}
