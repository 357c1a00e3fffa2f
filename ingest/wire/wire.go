// Package wire is what an exchange decoder hands the connection manager:
// one Frame per WebSocket message, holding the market data it carried
// (ticks, trades, best bid/ask quotes), the sequence values gap detection
// needs, the entries it refused and why, or — for a control message — what
// kind it was (subscribe ack or error, pong, heartbeat, server notice).
//
// The exchange packages (ingest/okx, ingest/bybit, ingest/coinbase,
// ingest/kraken) are pure: bytes in, a Frame out, and message builders
// that return bytes. Dialing, keep-alive scheduling, pacing and reconnects
// belong to the connection manager.
package wire

import (
	"errors"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/cockroachdb/apd/v3"
	jsonv2 "github.com/go-json-experiment/json"

	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Kind is what a frame turned out to be.
type Kind uint8

const (
	// Data: Ticks, Trades and Quotes hold what the frame carried (any of
	// them may be empty, e.g. when every entry was rejected).
	Data Kind = iota + 1
	// Subscribed acknowledges a subscription: Control.Channel and
	// Control.Symbols say which, where the exchange does.
	Subscribed
	// Unsubscribed acknowledges an unsubscribe.
	Unsubscribed
	// SubscribeError refuses a subscribe or unsubscribe request:
	// Control.Code and Control.Message say why.
	SubscribeError
	// Error is an error frame not tied to one subscription (bad request,
	// rate limit, "slow consumer"); Control.Code and Control.Message.
	Error
	// Pong answers our ping.
	Pong
	// Heartbeat is the exchange's own keep-alive; it proves the connection
	// is alive and carries nothing else (Coinbase's may carry a sequence).
	Heartbeat
	// Notice warns that the server will close the connection soon (OKX
	// event notice 64008, a maintenance status): open a replacement.
	Notice
	// Status is informational (Kraken's status channel while online,
	// OKX channel-conn-count): log it, nothing to do.
	Status
)

var kindNames = [...]string{"", "data", "subscribed", "unsubscribed", "subscribe_error", "error", "pong", "heartbeat", "notice", "status"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Frame is one decoded WebSocket message. Decoders append to its slices,
// so a caller that reuses a Frame (Reset between frames) decodes without
// reallocating them.
type Frame struct {
	Kind    Kind
	Ticks   []tick.Tick
	Trades  []tick.Trade
	Quotes  []Quote
	Seqs    []Seq
	Rejects []Reject
	Control Control
}

// Reset empties f, keeping its slices' capacity.
func (f *Frame) Reset() {
	f.Kind = 0
	f.Ticks = f.Ticks[:0]
	f.Trades = f.Trades[:0]
	f.Quotes = f.Quotes[:0]
	f.Seqs = f.Seqs[:0]
	f.Rejects = f.Rejects[:0]
	f.Control = Control{}
}

// Control describes a control frame.
type Control struct {
	Channel string   // the exchange's channel name, when it says
	Symbols []string // native symbols, when it says
	ReqID   string   // the request id echoed back, when there is one
	Code    string   // the exchange's error or notice code
	Message string   // the exchange's text
}

// Quote is a best bid/ask (top of book) update. Book updates are their own
// record rather than folded into ticks: a tick's Price is a last trade
// price, which a book update does not have, and folding needs per-pair
// state the decoder does not keep.
type Quote struct {
	Exchange, Symbol string
	Base, Quote      string // normalized; empty when the symbol did not resolve
	Bid, BidSize     apd.Decimal
	Ask, AskSize     apd.Decimal
	Timestamp        int64 // exchange time, Unix ms
	ReceivedAt       int64 // Unix µs
}

// Validate reports whether q is usable: identity, time, and a positive bid
// and ask (a one-sided book is refused: the decoders do not emit half
// quotes).
func (q *Quote) Validate() error {
	switch {
	case q.Exchange == "":
		return tick.ErrNoExchange
	case q.Symbol == "":
		return tick.ErrNoSymbol
	case q.Timestamp <= 0:
		return tick.ErrNoTime
	}
	for _, d := range []*apd.Decimal{&q.Bid, &q.Ask} {
		if d.Form != apd.Finite || d.Sign() <= 0 {
			return tick.ErrBadPrice
		}
	}
	for _, d := range []*apd.Decimal{&q.BidSize, &q.AskSize} {
		if d.Form != apd.Finite || d.Sign() < 0 {
			return tick.ErrNotFinite
		}
	}
	return nil
}

// Seq is one sequence value a frame carried, for gap detection: per
// (Channel, Symbol) stream, Field names the exchange's field.
type Seq struct {
	Channel, Symbol string
	Field           string // "tradeId", "seqId", "u", "sequence", "trade_id"
	Value           uint64
	// Prev is the value the exchange says came before (OKX prevSeqId);
	// zero when it does not say.
	Prev uint64
	// Contiguous: the exchange promises no value is skipped. With Prev set,
	// the stream's previous Value must equal Prev; without it, Value must
	// be the previous Value + 1. Any other step is a gap. When false,
	// values only increase: a jump says nothing, a step back is a replay
	// or a restart.
	Contiguous bool
	// Reset: this value starts a new run (a snapshot, a service restart);
	// do not compare it with the one before.
	Reset bool
	// Latest: the value reports where the stream stands without a record
	// of its own (Coinbase's heartbeat last_trade_id). Equal to the
	// previous Value is normal; above it, the records in between were
	// missed.
	Latest bool
}

// Reject is one entry of a data frame that was refused while the others
// were kept. Reason is a metric label.
type Reject struct {
	Channel, Symbol string
	Index           int // position in the frame's data array
	Reason          string
	Err             error
}

// Reasons: the label values for malformed frames and rejected entries,
// shared with ingest/binance's.
const (
	ReasonBadJSON        = "bad_json"
	ReasonTooLarge       = "too_large"
	ReasonBinary         = "binary_frame"
	ReasonUnexpected     = "unexpected_message" // valid JSON, not a shape we know
	ReasonUnknownStream  = "unknown_stream"     // a channel or symbol we did not subscribe
	ReasonMissingField   = "missing_field"
	ReasonBadField       = "bad_field"
	ReasonSymbolMismatch = "symbol_mismatch" // an entry's symbol differs from its stream's
	ReasonInvalid        = "invalid_record"  // parsed, but fails Validate
)

// MaxFrame is the largest frame a decoder reads; larger ones are refused
// with ReasonTooLarge before any parsing. The channels the decoders speak
// send at most tens of kilobytes (Kraken's 50-trade snapshot).
const MaxFrame = 1 << 20

// Malformed is a frame (or entry) a decoder refuses.
type Malformed struct {
	Reason string
	Detail string
}

func (m *Malformed) Error() string { return m.Reason + ": " + m.Detail }

// Fail builds a *Malformed.
func Fail(reason, detail string) error { return &Malformed{reason, detail} }

// ReasonOf is the metric label of a decoder error: its Malformed reason,
// or ReasonBadJSON for anything else.
func ReasonOf(err error) string {
	var m *Malformed
	if errors.As(err, &m) {
		return m.Reason
	}
	return ReasonBadJSON
}

// Decoder is what every exchange decoder implements. Decode decodes one
// text frame into f (which the caller has Reset); receivedAt is the local
// receive time in Unix µs, stamped on every record. A non-nil error means
// the whole frame was refused (f is then unspecified); entries refused
// one by one are in f.Rejects instead.
type Decoder interface {
	Decode(frame []byte, receivedAt int64, f *Frame) error
}

// Topics is the set of (channel, symbol) streams a connection subscribed,
// for decoders to refuse data nobody asked for. Safe for concurrent use
// (the writer adds, the read loop checks); the zero value is empty. A
// decoder with a nil *Topics accepts every stream.
type Topics struct {
	mu  sync.RWMutex
	set map[string]struct{}
}

// Add marks channel/symbol as subscribed.
func (t *Topics) Add(channel, symbol string) {
	t.mu.Lock()
	if t.set == nil {
		t.set = map[string]struct{}{}
	}
	t.set[channel+"\x00"+symbol] = struct{}{}
	t.mu.Unlock()
}

// Remove forgets channel/symbol.
func (t *Topics) Remove(channel, symbol string) {
	t.mu.Lock()
	delete(t.set, channel+"\x00"+symbol)
	t.mu.Unlock()
}

// Has reports whether channel/symbol is subscribed; a nil *Topics has
// everything.
func (t *Topics) Has(channel, symbol string) bool {
	if t == nil {
		return true
	}
	var buf [64]byte
	k := append(append(append(buf[:0], channel...), 0), symbol...)
	t.mu.RLock()
	_, ok := t.set[string(k)] // no allocation: map lookup by converted bytes
	t.mu.RUnlock()
	return ok
}

// Num is a JSON field whose text is a number, sent by the exchange either
// as a JSON string ("9999.99", "1597026383085") or as a bare JSON number
// (Kraken's 0.10025): Raw is that text, never converted through float64.
// Raw aliases the frame being decoded, so it is only valid during Decode.
type Num struct {
	Raw  []byte
	Set  bool // the field was present
	Null bool // it was JSON null
}

// UnmarshalJSON keeps the literal text.
func (n *Num) UnmarshalJSON(b []byte) error {
	n.Set = true
	switch {
	case len(b) > 0 && b[0] == '"':
		s := b[1 : len(b)-1]
		for _, c := range s {
			if c == '\\' {
				var u string // escapes in a number: unusual, so decode properly
				if err := jsonv2.Unmarshal(b, &u); err != nil {
					return err
				}
				s = []byte(u)
				break
			}
		}
		n.Raw = s
	case string(b) == "null":
		n.Null = true
	case len(b) > 0 && (b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		n.Raw = b
	default:
		return Fail(ReasonBadField, "expected a number or a string, got "+strconv.Quote(string(b[:min(len(b), 16)])))
	}
	return nil
}

// Decimal parses the field exactly into d; name is the exchange's field
// name for the error.
func (n *Num) Decimal(d *apd.Decimal, name string) error {
	switch {
	case !n.Set:
		return Fail(ReasonMissingField, "no "+name)
	case n.Null:
		return Fail(ReasonBadField, name+" is null")
	}
	if err := tick.ParseDecimal(d, unsafeString(n.Raw)); err != nil {
		return Fail(ReasonBadField, name+": "+err.Error())
	}
	return nil
}

// OptDecimal is Decimal for an optional field: absent, null or "" leave d
// zero; present text must still be a decimal.
func (n *Num) OptDecimal(d *apd.Decimal, name string) error {
	if !n.Set || n.Null || len(n.Raw) == 0 {
		d.SetFinite(0, 0)
		return nil
	}
	return n.Decimal(d, name)
}

// Uint parses the field as a non-negative integer.
func (n *Num) Uint(name string) (uint64, error) {
	switch {
	case !n.Set:
		return 0, Fail(ReasonMissingField, "no "+name)
	case n.Null || len(n.Raw) == 0:
		return 0, Fail(ReasonBadField, name+" is empty")
	}
	v, err := strconv.ParseUint(unsafeString(n.Raw), 10, 64)
	if err != nil {
		return 0, Fail(ReasonBadField, name+" "+strconv.Quote(string(n.Raw))+" is not a non-negative integer")
	}
	return v, nil
}

// Millis parses the field as a positive Unix time in milliseconds.
func (n *Num) Millis(name string) (int64, error) {
	v, err := n.Uint(name)
	if err != nil {
		return 0, err
	}
	if v == 0 || v > 1<<53 {
		return 0, Fail(ReasonBadField, name+" "+strconv.FormatUint(v, 10)+" is not a Unix time in ms")
	}
	return int64(v), nil
}

// Text is the field as a string (a trade id sent as a number or a string).
func (n *Num) Text(name string) (string, error) {
	switch {
	case !n.Set:
		return "", Fail(ReasonMissingField, "no "+name)
	case n.Null || len(n.Raw) == 0:
		return "", Fail(ReasonBadField, name+" is empty")
	}
	return string(n.Raw), nil
}

// RFC3339Millis parses an RFC 3339 timestamp with any fraction
// ("2023-02-09T20:30:37.167359596Z") to Unix milliseconds, truncating.
func RFC3339Millis(s, name string) (int64, error) {
	if s == "" {
		return 0, Fail(ReasonMissingField, "no "+name)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, Fail(ReasonBadField, name+" "+strconv.Quote(s)+" is not an RFC 3339 time")
	}
	ms := t.UnixMilli()
	if ms <= 0 {
		return 0, Fail(ReasonBadField, name+" "+strconv.Quote(s)+" is before 1970")
	}
	return ms, nil
}

// Check refuses what no decoder should parse: an empty frame or one over
// MaxFrame. Call it first in Decode.
func Check(frame []byte) error {
	switch {
	case len(frame) > MaxFrame:
		return Fail(ReasonTooLarge, strconv.Itoa(len(frame))+" bytes")
	case len(frame) == 0:
		return Fail(ReasonBadJSON, "empty frame")
	}
	return nil
}

// Unmarshal decodes one JSON value into v, with its error as a Malformed:
// bad_field for a value of the wrong type, bad_json for broken syntax.
//
// It is github.com/go-json-experiment/json (encoding/json/v2 as it will
// land in the standard library), not encoding/json, because v1 matches
// object keys case-insensitively: an unknown field "Last" would silently
// overwrite "last", and Bybit's one-letter fields (s symbol, S side) are
// each other's twins. v2 matches exactly, refuses duplicate keys and
// invalid UTF-8, and decodes a []byte input in place, so Num.Raw can alias
// the frame instead of copying every number.
func Unmarshal(b []byte, v any) error {
	if err := jsonv2.Unmarshal(b, v); err != nil {
		var m *Malformed
		if errors.As(err, &m) {
			return m
		}
		var se *jsonv2.SemanticError
		if errors.As(err, &se) {
			return Fail(ReasonBadField, err.Error())
		}
		return Fail(ReasonBadJSON, err.Error())
	}
	return nil
}

func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Assets caches the normalized instrument of each native symbol one
// decoder sees. Not safe for concurrent use: each decoder owns one.
type Assets struct {
	Exchange string
	// Resolver answers first when set (the exchange's listing); otherwise
	// instrument.Resolve reads the symbol form.
	Resolver *instrument.Resolver
	cache    map[string]instrument.Instrument
}

// maxAssets bounds the cache; past it, symbols are resolved every time.
const maxAssets = 4096

// Of returns the base and quote of symbol, or two empty strings when it
// does not resolve (the record is still published, under its native
// symbol).
func (a *Assets) Of(symbol string) (base, quote string) {
	if in, ok := a.cache[symbol]; ok {
		return in.Base, in.Quote
	}
	in, err := a.Resolver.Resolve(a.Exchange, symbol)
	if err != nil {
		in = instrument.Instrument{}
	}
	if a.cache == nil {
		a.cache = map[string]instrument.Instrument{}
	}
	if len(a.cache) < maxAssets {
		a.cache[symbol] = in
	}
	return in.Base, in.Quote
}
