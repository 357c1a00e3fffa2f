package tick

import (
	"errors"
	"fmt"
	"strconv"
)

// The trade codec follows the tick codec: hand-written, decimals as JSON
// strings in apd's 'f' form (so "0.00100000" keeps its eight places), unknown
// fields skipped, and the same scanner underneath. Field names:
// exchange, symbol, base, quote, timestamp, price, size, side, trade_id,
// received_at_us. base, quote and received_at_us are omitted when empty.

// AppendJSON appends the trade's JSON encoding to b.
func (t *Trade) AppendJSON(b []byte) []byte {
	b = append(b, `{"exchange":`...)
	b = appendString(b, t.Exchange)
	b = append(b, `,"symbol":`...)
	b = appendString(b, t.Symbol)
	if t.Base != "" || t.Quote != "" {
		b = append(b, `,"base":`...)
		b = appendString(b, t.Base)
		b = append(b, `,"quote":`...)
		b = appendString(b, t.Quote)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, t.Timestamp, 10)
	b = appendDec(b, `,"price":"`, &t.Price)
	b = appendDec(b, `,"size":"`, &t.Size)
	b = append(b, `,"side":`...)
	b = appendString(b, string(t.Side))
	b = append(b, `,"trade_id":`...)
	b = appendString(b, t.TradeID)
	if t.ReceivedAt != 0 {
		b = append(b, `,"received_at_us":`...)
		b = strconv.AppendInt(b, t.ReceivedAt, 10)
	}
	return append(b, '}')
}

// MarshalJSON lets a Trade sit inside values encoded with encoding/json.
func (t Trade) MarshalJSON() ([]byte, error) { return t.AppendJSON(make([]byte, 0, 192)), nil }

// UnmarshalJSON lets a Trade sit inside values decoded with encoding/json.
func (t *Trade) UnmarshalJSON(b []byte) error { return UnmarshalTrade(b, t) }

// UnmarshalTrade decodes a trade encoded by AppendJSON. Unknown fields are
// skipped; decimals may be JSON strings or bare numbers, parsed exactly.
// It checks syntax, not meaning: call Validate for that.
func UnmarshalTrade(data []byte, t *Trade) error {
	*t = Trade{}
	d := decoder{b: data}
	if err := d.tradeObject(t); err != nil {
		return fmt.Errorf("%w: %v at byte %d", ErrSyntax, err, d.i)
	}
	return nil
}

func (d *decoder) tradeObject(t *Trade) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return d.end()
	}
	for {
		key, _, err := d.str()
		if err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		d.ws()
		if err := d.tradeField(t, key); err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		d.ws()
		if d.i >= len(d.b) {
			return errors.New("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
			d.ws()
		case '}':
			d.i++
			return d.end()
		default:
			return errors.New("expected ',' or '}'")
		}
	}
}

func (d *decoder) tradeField(t *Trade, key []byte) error {
	switch string(key) {
	case "exchange":
		return d.text(&t.Exchange, slotExchange)
	case "symbol":
		return d.text(&t.Symbol, slotSymbol)
	case "base":
		return d.text(&t.Base, slotBase)
	case "quote":
		return d.text(&t.Quote, slotQuote)
	case "timestamp":
		return d.int(&t.Timestamp)
	case "received_at_us":
		return d.int(&t.ReceivedAt)
	case "price":
		return d.dec(&t.Price)
	case "size":
		return d.dec(&t.Size)
	case "side":
		raw, _, err := d.str()
		if err != nil {
			return err
		}
		t.Side = internSide(raw)
		return nil
	case "trade_id":
		return d.text(&t.TradeID, slotNone)
	default:
		return d.skip(0)
	}
}

// internSide avoids an allocation for the two sides every trade carries.
func internSide(raw []byte) Side {
	switch string(raw) {
	case "buy":
		return Buy
	case "sell":
		return Sell
	}
	return Side(raw)
}
