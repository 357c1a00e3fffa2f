package tick

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/cockroachdb/apd/v3"
)

// The JSON codec is hand-written because it runs for every tick in every
// sink: encoding/json with apd's TextMarshaler costs several allocations per
// field. Field names follow the seed (exchange, symbol, timestamp, price,
// volume, bid, ask); the rest are snake_case. Decimals are JSON strings.
// base and quote (the normalized instrument) follow symbol and are omitted
// when empty, so records written before them decode unchanged.

// AppendJSON appends the tick's JSON encoding to b.
func (t *Tick) AppendJSON(b []byte) []byte {
	b = append(b, `{"exchange":`...)
	b = appendString(b, t.Exchange)
	b = append(b, `,"symbol":`...)
	b = appendString(b, t.Symbol)
	if t.Base != "" || t.Quote != "" {
		// Omitted when empty: records from before the instrument model
		// and unresolved symbols stay as small as they were.
		b = append(b, `,"base":`...)
		b = appendString(b, t.Base)
		b = append(b, `,"quote":`...)
		b = appendString(b, t.Quote)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, t.Timestamp, 10)
	b = appendDec(b, `,"price":"`, &t.Price)
	b = appendDec(b, `,"volume":"`, &t.Volume)
	b = appendDec(b, `,"bid":"`, &t.Bid)
	b = appendDec(b, `,"ask":"`, &t.Ask)
	b = appendOptDec(b, `,"open_24h":"`, &t.Open24h)
	b = appendOptDec(b, `,"high_24h":"`, &t.High24h)
	b = appendOptDec(b, `,"low_24h":"`, &t.Low24h)
	b = appendOptDec(b, `,"quote_volume":"`, &t.QuoteVolume)
	if t.ReceivedAt != 0 {
		b = append(b, `,"received_at_us":`...)
		b = strconv.AppendInt(b, t.ReceivedAt, 10)
	}
	return append(b, '}')
}

// MarshalJSON lets a Tick sit inside values encoded with encoding/json.
func (t Tick) MarshalJSON() ([]byte, error) { return t.AppendJSON(make([]byte, 0, 256)), nil }

// UnmarshalJSON lets a Tick sit inside values decoded with encoding/json.
func (t *Tick) UnmarshalJSON(b []byte) error { return Unmarshal(b, t) }

func appendDec(b []byte, prefix string, d *apd.Decimal) []byte {
	b = append(b, prefix...)
	b = appendDecimal(b, d)
	return append(b, '"')
}

func appendOptDec(b []byte, prefix string, d *apd.Decimal) []byte {
	if d.IsZero() && d.Exponent == 0 && d.Form == apd.Finite {
		return b // absent: the source did not give it
	}
	return appendDec(b, prefix, d)
}

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // rare: exchange names are plain ASCII
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// ErrSyntax wraps every decoding failure.
var ErrSyntax = errors.New("tick: bad JSON")

// Unmarshal decodes a tick encoded by AppendJSON. Unknown fields are skipped
// so older consumers read newer producers' records. Decimal fields may be JSON
// strings or bare numbers; either way they are parsed exactly.
func Unmarshal(data []byte, t *Tick) error { return unmarshal(data, t, nil) }

func unmarshal(data []byte, t *Tick, in *Strings) error {
	*t = Tick{}
	d := decoder{b: data, in: in}
	if err := d.object(t); err != nil {
		return fmt.Errorf("%w: %v at byte %d", ErrSyntax, err, d.i)
	}
	return nil
}

type decoder struct {
	b  []byte
	i  int
	in *Strings // nil: names not in interned are fresh strings
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) expect(c byte) error {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != c {
		return fmt.Errorf("expected %q", c)
	}
	d.i++
	return nil
}

func (d *decoder) object(t *Tick) error {
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
		if err := d.field(t, key); err != nil {
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

func (d *decoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return errors.New("trailing data")
	}
	return nil
}

func (d *decoder) field(t *Tick, key []byte) error {
	switch string(key) { // no allocation: the compiler optimises this switch
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
	case "volume":
		return d.dec(&t.Volume)
	case "bid":
		return d.dec(&t.Bid)
	case "ask":
		return d.dec(&t.Ask)
	case "open_24h":
		return d.dec(&t.Open24h)
	case "high_24h":
		return d.dec(&t.High24h)
	case "low_24h":
		return d.dec(&t.Low24h)
	case "quote_volume":
		return d.dec(&t.QuoteVolume)
	default:
		return d.skip(0)
	}
}

// str reads a JSON string and returns its raw bytes (escapes resolved only
// when present, in which case esc is true and the bytes are freshly allocated).
func (d *decoder) str() ([]byte, bool, error) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false, errors.New("expected string")
	}
	start := d.i + 1
	esc := false
	for j := start; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '\\':
			esc = true
			j++
		case c == '"':
			d.i = j + 1
			if !esc {
				return d.b[start:j], false, nil
			}
			var s string
			if err := json.Unmarshal(d.b[start-1:j+1], &s); err != nil {
				return nil, false, err
			}
			return []byte(s), true, nil
		case c < 0x20:
			return nil, false, errors.New("control character in string")
		}
	}
	return nil, false, errors.New("unterminated string")
}

// Exchange names and asset codes repeat on every record; interning the
// common ones saves an allocation per field per decode.
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"binance", "sim", "okx", "bybit", "coinbase", "kraken",
		"BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "LTC", "DOT", "AVAX", "LINK", "TRX",
		"USDT", "USDC", "USD", "EUR", "FDUSD", "DAI", "GBP",
	} {
		m[s] = s
	}
	return m
}()

// Name slots: the field a name was decoded from, for Strings' one-entry
// memory of the last name of each.
const (
	slotExchange = iota
	slotSymbol
	slotBase
	slotQuote
	slotNone // a field with no memory (a trade id is new every time)
)

func (d *decoder) text(dst *string, slot int) error {
	raw, _, err := d.str()
	if err != nil {
		return err
	}
	if d.in != nil {
		*dst = d.in.get(raw, slot)
		return nil
	}
	if s, ok := interned[string(raw)]; ok {
		*dst = s
		return nil
	}
	*dst = string(raw)
	return nil
}

func (d *decoder) int(dst *int64) error {
	start := d.i
	for d.i < len(d.b) && (d.b[d.i] == '-' || (d.b[d.i] >= '0' && d.b[d.i] <= '9')) {
		d.i++
	}
	n, err := strconv.ParseInt(unsafeString(d.b[start:d.i]), 10, 64)
	if err != nil {
		return errors.New("expected integer")
	}
	*dst = n
	return nil
}

func (d *decoder) dec(dst *apd.Decimal) error {
	var raw []byte
	if d.i < len(d.b) && d.b[d.i] == '"' {
		s, _, err := d.str()
		if err != nil {
			return err
		}
		raw = s
	} else {
		start := d.i
		for d.i < len(d.b) && isNumByte(d.b[d.i]) {
			d.i++
		}
		raw = d.b[start:d.i]
	}
	return ParseDecimal(dst, unsafeString(raw))
}

func isNumByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// skip consumes any JSON value, bounded in nesting so hostile input cannot
// exhaust the stack.
func (d *decoder) skip(depth int) error {
	if depth > 32 {
		return errors.New("nested too deep")
	}
	d.ws()
	if d.i >= len(d.b) {
		return errors.New("unexpected end")
	}
	switch c := d.b[d.i]; {
	case c == '"':
		_, _, err := d.str()
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		d.i++
		d.ws()
		if d.i < len(d.b) && d.b[d.i] == closer {
			d.i++
			return nil
		}
		for {
			if c == '{' {
				if _, _, err := d.str(); err != nil {
					return err
				}
				if err := d.expect(':'); err != nil {
					return err
				}
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.ws()
			if d.i >= len(d.b) {
				return errors.New("unexpected end")
			}
			if d.b[d.i] == ',' {
				d.i++
				continue
			}
			if d.b[d.i] == closer {
				d.i++
				return nil
			}
			return errors.New("bad container")
		}
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(d.b)-d.i >= len(lit) && string(d.b[d.i:d.i+len(lit)]) == lit {
				d.i += len(lit)
				return nil
			}
		}
		return errors.New("bad literal")
	default:
		start := d.i
		for d.i < len(d.b) && isNumByte(d.b[d.i]) {
			d.i++
		}
		if d.i == start {
			return errors.New("unexpected character")
		}
		return nil
	}
}

// unsafeString views b as a string without copying; only for values that do
// not outlive the call (apd copies what it keeps).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
