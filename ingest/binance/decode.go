package binance

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unsafe"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/ingest/wsfeed"
	"github.com/tickflow/tickflow/tick"
)

// The decoder is a hand-written scanner over one frame: it runs for every
// message of every connection, and encoding/json into a map (or reflection
// into a struct plus a string per field) costs more than the rest of the
// read path together. It validates the JSON it walks, keeps only the fields
// a 24hrTicker needs, and parses decimals straight from the frame's bytes.

// Malformed-frame reasons: the label values of malformed_frames_total.
const (
	reasonBadJSON         = wsfeed.ReasonBadJSON
	reasonBinary          = wsfeed.ReasonBinary
	reasonUnexpected      = "unexpected_message" // valid JSON, not a shape we know
	reasonResponse        = "unexpected_response"
	reasonUnknownStream   = "unknown_stream"
	reasonUnexpectedEvent = "unexpected_event"
	reasonMissingField    = "missing_field"
	reasonBadField        = "bad_field"
	reasonSymbolMismatch  = "symbol_mismatch"
	reasonInvalidTick     = "invalid_tick"
)

// frameKind is what a frame turned out to be.
type frameKind int

const (
	frameTicker   frameKind = iota + 1 // t holds a decoded tick
	frameError                         // {"code":..,"msg":..}: info holds both
	frameShutdown                      // serverShutdown event
)

// malformed is a frame the decoder refuses; reason is a metric label,
// detail is for the log.
type malformed struct {
	reason string
	detail string
}

func (m *malformed) Error() string { return m.reason + ": " + m.detail }

// stream is what the decoder knows about one subscribed stream.
type stream struct {
	symbol string // upper-case, as ticks carry it
	kind   string // KindTicker, KindTrade, KindBook; "" is a ticker
}

type decoder struct {
	streams map[string]*stream // by stream name: "btcusdt@ticker"
}

// event holds the raw fields of one event object, sliced from the frame.
type event struct {
	e, s, E                []byte
	c, v, b, a, o, h, l, q []byte
	nonString              byte // first field that should be a plain string and is not
	eventTimeNotInt        bool
}

// decode decodes one text frame. For a ticker it fills t (all but
// ReceivedAt) and returns the stream it came on.
func (d *decoder) decode(frame []byte, t *tick.Tick) (frameKind, *stream, string, error) {
	s := scanner{b: frame}
	var (
		streamName, code, msg []byte
		msgEscaped            bool
		data, top, wrapped    event
		hasData               bool
		hasResult, hasID      bool
	)
	s.ws()
	if !s.consume('{') {
		return 0, nil, "", s.fail("frame is not a JSON object")
	}
	for more := s.firstMember(); more; more = s.nextMember() {
		key, ok := s.key()
		if !ok {
			break
		}
		switch string(key) {
		case "stream":
			if streamName, _, ok = s.str(); !ok {
				s.skip()
			}
		case "data":
			hasData = s.object(&data)
		case "event":
			s.object(&wrapped)
		case "code":
			code = s.number()
		case "msg":
			msg, msgEscaped, _ = s.str()
		case "result":
			hasResult = s.skip()
		case "id":
			hasID = s.skip()
		default:
			if len(key) == 1 {
				s.field(&top, key[0])
			} else {
				s.skip()
			}
		}
	}
	if s.err != nil {
		return 0, nil, "", s.err
	}
	s.ws()
	if s.i != len(s.b) {
		return 0, nil, "", s.fail("trailing data after the JSON object")
	}

	switch {
	case string(data.e) == "serverShutdown" || string(top.e) == "serverShutdown" || string(wrapped.e) == "serverShutdown":
		return frameShutdown, nil, "", nil
	case code != nil && streamName == nil:
		m := string(msg)
		if msgEscaped {
			_ = json.Unmarshal(append(append([]byte{'"'}, msg...), '"'), &m)
		}
		return frameError, nil, "code=" + string(code) + " msg=" + strconv.Quote(m), nil
	case hasResult || hasID:
		return 0, nil, "", &malformed{reasonResponse, "a response to a request we never sent"}
	case streamName == nil || !hasData:
		return 0, nil, "", &malformed{reasonUnexpected, "neither a stream event nor an error frame"}
	}

	st := d.streams[string(streamName)]
	if st == nil {
		return 0, nil, "", &malformed{reasonUnknownStream, "stream " + strconv.Quote(string(streamName)) + " was not subscribed"}
	}
	if st.kind != "" && st.kind != KindTicker {
		return 0, nil, "", &malformed{reasonUnexpectedEvent, "a " + st.kind + " stream's event"}
	}
	if data.e == nil {
		return 0, nil, "", &malformed{reasonMissingField, "event has no e (event type)"}
	}
	if string(data.e) != "24hrTicker" {
		return 0, nil, "", &malformed{reasonUnexpectedEvent, "event type " + strconv.Quote(string(data.e)) + " on a ticker stream"}
	}
	if err := fillTick(&data, st, t); err != nil {
		return 0, nil, "", err
	}
	return frameTicker, st, "", nil
}

func fillTick(ev *event, st *stream, t *tick.Tick) error {
	if ev.nonString != 0 {
		return &malformed{reasonBadField, "field " + string(ev.nonString) + " is not a plain string"}
	}
	if ev.eventTimeNotInt {
		return &malformed{reasonBadField, "field E is not an integer"}
	}
	fields := [...]struct {
		name byte
		raw  []byte
		dst  *apd.Decimal
	}{
		{'c', ev.c, &t.Price}, {'v', ev.v, &t.Volume}, {'b', ev.b, &t.Bid}, {'a', ev.a, &t.Ask},
		{'o', ev.o, &t.Open24h}, {'h', ev.h, &t.High24h}, {'l', ev.l, &t.Low24h}, {'q', ev.q, &t.QuoteVolume},
	}
	if ev.E == nil {
		return &malformed{reasonMissingField, "event has no E (event time)"}
	}
	if ev.s == nil {
		return &malformed{reasonMissingField, "event has no s (symbol)"}
	}
	for _, f := range fields {
		if f.raw == nil {
			return &malformed{reasonMissingField, "event has no " + string(f.name)}
		}
	}
	if string(ev.s) != st.symbol {
		return &malformed{reasonSymbolMismatch, "symbol " + strconv.Quote(string(ev.s)) + " on the stream of " + st.symbol}
	}
	ts, err := strconv.ParseInt(unsafeString(ev.E), 10, 64)
	if err != nil || ts <= 0 {
		return &malformed{reasonBadField, "E " + strconv.Quote(string(ev.E)) + " is not a positive integer"}
	}
	*t = tick.Tick{Exchange: Exchange, Symbol: st.symbol, Timestamp: ts}
	for _, f := range fields {
		if err := tick.ParseDecimalBytes(f.dst, f.raw); err != nil {
			return &malformed{reasonBadField, "field " + string(f.name) + ": " + err.Error()}
		}
	}
	if err := t.Validate(); err != nil {
		return &malformed{reasonInvalidTick, err.Error()}
	}
	return nil
}

// unsafeString views b as a string without copying, for parsers that do
// not keep their input.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// scanner walks one JSON document. The first error sticks; every method is
// a no-op after it.
type scanner struct {
	b   []byte
	i   int
	err error
}

func (s *scanner) fail(detail string) error {
	if s.err == nil {
		s.err = &malformed{reasonBadJSON, detail + " at byte " + strconv.Itoa(s.i)}
	}
	return s.err
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			return
		}
		s.i++
	}
}

func (s *scanner) consume(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// firstMember is called after '{': it reports whether a member follows.
func (s *scanner) firstMember() bool {
	if s.err != nil {
		return false
	}
	return !s.consume('}')
}

// nextMember is called after a member's value.
func (s *scanner) nextMember() bool {
	if s.err != nil {
		return false
	}
	if s.consume(',') {
		return true
	}
	if s.consume('}') {
		return false
	}
	s.fail("expected , or } in object")
	return false
}

// key reads `"name":`.
func (s *scanner) key() ([]byte, bool) {
	k, _, ok := s.str()
	if !ok {
		s.fail("expected an object key")
		return nil, false
	}
	if !s.consume(':') {
		s.fail("expected : after object key")
		return nil, false
	}
	return k, true
}

// str reads a string and returns its raw contents (escapes not decoded).
// ok is false, with no error, when the next value is not a string; the
// caller then skips it or fails.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	if s.err != nil {
		return nil, false, false
	}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, false
	}
	start := s.i + 1
	// Fast path: find the closing quote, then check the span holds no
	// escapes or control characters (Binance's strings never do).
	if k := bytes.IndexByte(s.b[start:], '"'); k >= 0 {
		end := start + k
		clean := true
		for _, c := range s.b[start:end] {
			if c < 0x20 || c == '\\' {
				clean = false
				break
			}
		}
		if clean {
			s.i = end + 1
			return s.b[start:end], false, true
		}
	}
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], escaped, true
		case c == '\\':
			escaped = true
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			s.i = j
			s.fail("control character in string")
			return nil, false, false
		}
	}
	s.i = len(s.b)
	s.fail("unterminated string")
	return nil, false, false
}

// number reads a JSON number's text, or nil (and skips the value) when the
// value is something else.
func (s *scanner) number() []byte {
	if s.err != nil {
		return nil
	}
	s.ws()
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			s.i++
			continue
		}
		break
	}
	if s.i == start {
		s.skip()
		return nil
	}
	return s.b[start:s.i]
}

// skip passes over one value of any type, checking its syntax.
func (s *scanner) skip() bool {
	if s.err != nil {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		s.fail("expected a value")
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == '{':
		s.i++
		for more := s.firstMember(); more; more = s.nextMember() {
			if _, ok := s.key(); !ok {
				return false
			}
			s.skip()
		}
	case c == '[':
		s.i++
		if s.consume(']') {
			return true
		}
		for {
			s.skip()
			if s.err != nil || s.consume(']') {
				break
			}
			if !s.consume(',') {
				s.fail("expected , or ] in array")
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if !validNumber(s.number()) {
			s.fail("bad number")
		}
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return true
			}
		}
		s.fail("unexpected character")
	}
	return s.err == nil
}

// validNumber checks JSON number grammar: garbage like "1-2" and leading
// zeros like "01" (found by FuzzDecode) are refused.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	// The integer part is 0 or starts with 1-9: JSON has no leading zeros.
	if i+1 < len(b) && b[i] == '0' && b[i+1] >= '0' && b[i+1] <= '9' {
		return false
	}
	if !digits() {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(b)
}

// object reads an event object into ev, keeping the one-letter fields a
// ticker needs. It reports whether an object was read; a non-object value
// is skipped.
func (s *scanner) object(ev *event) bool {
	if s.err != nil {
		return false
	}
	if !s.consume('{') {
		s.skip()
		return false
	}
	for more := s.firstMember(); more; more = s.nextMember() {
		key, ok := s.key()
		if !ok {
			return false
		}
		if len(key) == 1 {
			s.field(ev, key[0])
		} else {
			s.skip()
		}
	}
	return s.err == nil
}

// field reads the value of one-letter key k into ev.
func (s *scanner) field(ev *event, k byte) {
	var dst *[]byte
	switch k {
	case 'E':
		n := s.number()
		if n == nil || !validNumber(n) {
			ev.eventTimeNotInt = true
			if n != nil {
				s.fail("bad number")
			}
			ev.E = []byte{}
			return
		}
		ev.E = n
		return
	case 'e':
		dst = &ev.e
	case 's':
		dst = &ev.s
	case 'c':
		dst = &ev.c
	case 'v':
		dst = &ev.v
	case 'b':
		dst = &ev.b
	case 'a':
		dst = &ev.a
	case 'o':
		dst = &ev.o
	case 'h':
		dst = &ev.h
	case 'l':
		dst = &ev.l
	case 'q':
		dst = &ev.q
	default:
		s.skip()
		return
	}
	raw, escaped, ok := s.str()
	switch {
	case s.err != nil:
	case !ok:
		// Present but not a string (a number, null): a bad field, not a
		// missing one. Remember the first such field.
		if ev.nonString == 0 {
			ev.nonString = k
		}
		s.skip()
		*dst = []byte{}
	case escaped:
		// Binance never escapes inside symbols or decimals; an escape means
		// the value is not one we can use as is.
		if ev.nonString == 0 {
			ev.nonString = k
		}
		*dst = raw
	default:
		*dst = raw
	}
}
