package push

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tickflow/tickflow/tick"
)

// The wire protocol. Clients send JSON text frames:
//
//	{"type":"subscribe","channels":["tick"],"symbols":["BTCUSDT"],"exchanges":["binance"]}
//	{"type":"subscribe", ...same shape..., "since":{"epoch":"...","offsets":{"0":41,"1":17}}}
//	{"type":"unsubscribe", ...same shape...}
//	{"type":"ping"}
//
// A missing or empty list means "all" for that dimension, except that a
// missing channels list means tick, alert and signal: trade (every public
// trade, from market_data.trades) and quote (every best bid/ask change,
// from market_data.quotes) come many per tick and are sent only to clients
// that name them. A subscription is
// the set of (channel, exchange, symbol) combinations the lists expand to;
// subscribes add combinations, unsubscribes remove exactly the combinations
// their lists expand to.
//
// The server sends:
//
//	{"type":"subscribed","channels":[..],"exchanges":[..],"symbols":[..],"subscriptions":N,"snapshot":M,
//	 "position":{"epoch":"...","offsets":{"0":40,...}}}
//	  followed at once by M tick messages: the latest tick of every matching pair
//	{"type":"unsubscribed", ...same fields, snapshot 0...}
//	{"type":"tick","part":P,"off":O,"data":{tick}}
//	{"type":"alert","key":"exchange:symbol","data":{...}} and {"type":"signal",...}
//	{"type":"trade","key":"exchange:symbol","data":{trade}} and {"type":"quote",...,"data":{quote}}
//	  (the records of market_data.trades and market_data.quotes as ingest
//	  publishes them; the symbol is the exchange's own, e.g. "BTC-USDT")
//	{"type":"conflated","skipped":N}   N ticks or quotes were replaced by newer ones of their pair (slow client)
//	{"type":"position","position":{...}}   after the missed ticks of a resume
//	{"type":"pong"}
//	{"type":"error","code":"...","message":"..."}
//
// Positions and resuming. A tick's position is where its record sits in
// the tick topic: partition P, offset O (Kafka's own, so durable, unique,
// and the same on every push instance and across restarts). The epoch is
// the topic's ID: a topic deleted and created again starts its offsets
// over, and a position from before means nothing. A pair always lives on
// one partition, and a client gets each partition's live and missed ticks
// in offset order (snapshot ticks, all at or below the reply's position,
// are sorted by pair), so a client's position is, per partition, the
// highest offset it has seen:
// start from the "position" of the subscribed reply (every tick at or
// below it predates the subscription), raise an offset with every tick's
// part/off and with every "position" frame, and keep it across
// reconnects. Ticks without part/off (snapshots from the cache after a
// restart, or a server without a broker) leave it alone.
//
// A subscribe with "since" resumes: the server reads what the client's
// filter missed from the broker's retained log and replies
//
//	{"type":"subscribed",...,"recovered":true,"recovery":{"ticks":N}}
//	  then the N missed ticks, oldest first per partition (partitions
//	  interleaved by event time), then {"type":"position",...}, then live
//	  ticks: none of them twice and none of them before a missed one.
//
// or, when it cannot, says why and what is gone, then behaves as a fresh
// subscribe (snapshot, position, live):
//
//	{"type":"subscribed",...,"snapshot":M,"position":{...},"recovered":false,
//	 "recovery":{"ticks":0,"reason":"trimmed: ...","lost":[{"partition":0,"from":42,"to":9000}]}}
//
// The reason starts with one of: unavailable (no broker log here), epoch
// (the topic was recreated), bad_position (past the log's end),
// no_position (a partition with records is missing from since), trimmed
// (retention removed offsets the client needs: "lost" lists them, records
// of every pair on the partition, so an upper bound on the client's loss),
// too_large (more than limits.max_recovery_records to read or
// limits.max_recovery_bytes to send), busy (limits.recovery_concurrency
// recoveries under way for limits.recovery_timeout), error (the broker
// failed). The counter tickflow_push_recoveries_total{result} counts each.
//
// Conflation and positions: a slow client's queued tick is replaced by the
// pair's newer one, which moves to the end of the queue, so offsets still
// only go up; the client's position then passes ticks it never got, and
// the "conflated" frame before the next batch says how many. A resume
// never replays those: they were replaced because they were stale.
// Resume with the filter the position was reached with; a wider filter gets
// the new pairs' ticks since the position too.

// channel is what a message is about.
type channel uint8

const (
	chTick channel = iota
	chAlert
	chSignal
	chTrade
	chQuote
	numChannels
)

var channelNames = [numChannels]string{"tick", "alert", "signal", "trade", "quote"}

// defaultChannels are what a subscribe without channels gets: trades and
// quotes come many per tick, so a client asks for them by name.
var defaultChannels = []channel{chTick, chAlert, chSignal}

func (c channel) String() string { return channelNames[c] }

func parseChannel(s string) (channel, bool) {
	for i, n := range channelNames {
		if n == s {
			return channel(i), true
		}
	}
	return 0, false
}

// subKey is one subscription combination; "" in a dimension is the
// wildcard.
type subKey struct {
	ch       channel
	exchange string
	symbol   string
}

// Error codes sent in {"type":"error"} frames. The ones marked "closes" are
// followed by a close frame with the given status.
const (
	codeBadJSON          = "bad_json"               // stays open
	codeUnknownType      = "unknown_type"           // stays open
	codeUnknownChannel   = "unknown_channel"        // stays open
	codeBadFilter        = "bad_filter"             // stays open
	codeBadPosition      = "bad_position"           // stays open; the subscribe is refused whole
	codeTooManySubs      = "too_many_subscriptions" // stays open; the subscribe is refused whole
	codeRateLimited      = "rate_limited"           // closes 1008
	codeTooBig           = "message_too_big"        // closes 1009
	codeBinary           = "binary_not_supported"   // closes 1003
	codeTooManyConns     = "too_many_connections"   // closes 1013
	codeSlowConsumer     = "slow_consumer"          // closes 1008
	codeShutdown         = "shutting_down"          // closes 1001
	maxFilterValueLength = 64
)

// request is a client message.
type request struct {
	Type      string   `json:"type"`
	Channels  []string `json:"channels"`
	Exchanges []string `json:"exchanges"`
	Symbols   []string `json:"symbols"`
	// Since, on a subscribe, is the position the client resumes from: the
	// "position" of its last subscribed reply advanced by every tick it
	// received since.
	Since *position `json:"since"`
}

// position is a place in the tick topic: per partition (a decimal string
// key, as JSON objects need) the offset of the last tick accounted for.
// Epoch is the topic's ID; offsets from another epoch mean nothing.
type position struct {
	Epoch   string           `json:"epoch"`
	Offsets map[string]int64 `json:"offsets"`
}

// parsePosition checks a client's since; offsets are -1 (nothing yet) or
// more.
func parsePosition(p *position) (map[int32]int64, *protoError) {
	if p.Epoch == "" {
		return nil, perr(codeBadPosition, "since: missing epoch")
	}
	out := make(map[int32]int64, len(p.Offsets))
	for k, o := range p.Offsets {
		n, err := strconv.ParseInt(k, 10, 32)
		if err != nil || n < 0 || o < -1 {
			return nil, perr(codeBadPosition, "since: bad offset %q: %d", truncate(k, 16), o)
		}
		out[int32(n)] = o
	}
	return out, nil
}

func encodePosition(epoch string, offs map[int32]int64) *position {
	if epoch == "" {
		return nil
	}
	p := &position{Epoch: epoch, Offsets: make(map[string]int64, len(offs))}
	for k, o := range offs {
		p.Offsets[strconv.Itoa(int(k))] = o
	}
	return p
}

// filter is a validated, normalised subscribe or unsubscribe.
type filter struct {
	channels  []channel
	exchanges []string // nil = all
	symbols   []string // nil = all
}

// protoError is a client mistake reported in an error frame.
type protoError struct {
	code, msg string
}

func (e *protoError) Error() string { return e.code + ": " + e.msg }

func perr(code, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...)}
}

// parseFilter validates the lists of a subscribe or unsubscribe. maxCombos
// bounds the expansion before it is built, so a request naming thousands of
// symbols costs nothing.
func parseFilter(r *request, maxCombos int) (filter, *protoError) {
	var f filter
	seen := map[channel]bool{}
	for _, s := range r.Channels {
		c, ok := parseChannel(s)
		if !ok {
			return f, perr(codeUnknownChannel, "unknown channel %q (known: tick, alert, signal, trade, quote)", s)
		}
		if !seen[c] {
			seen[c] = true
			f.channels = append(f.channels, c)
		}
	}
	if len(f.channels) == 0 {
		f.channels = defaultChannels
	}
	var err *protoError
	if f.exchanges, err = normalizeList("exchanges", r.Exchanges, tick.NormalizeExchange); err != nil {
		return f, err
	}
	if f.symbols, err = normalizeList("symbols", r.Symbols, tick.NormalizeSymbol); err != nil {
		return f, err
	}
	if n := f.combos(); n > maxCombos {
		return f, perr(codeTooManySubs, "request expands to %d subscriptions; the limit per connection is %d", n, maxCombos)
	}
	return f, nil
}

func normalizeList(field string, in []string, norm func(string) string) ([]string, *protoError) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		n := norm(s)
		if n == "" || len(n) > maxFilterValueLength || strings.ContainsAny(n, ": \t\"\\") {
			return nil, perr(codeBadFilter, "%s: bad value %q", field, truncate(s, maxFilterValueLength))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (f *filter) combos() int {
	return len(f.channels) * max(1, len(f.exchanges)) * max(1, len(f.symbols))
}

// keys expands the filter into subscription combinations.
func (f *filter) keys() []subKey {
	exs, syms := f.exchanges, f.symbols
	if exs == nil {
		exs = []string{""}
	}
	if syms == nil {
		syms = []string{""}
	}
	out := make([]subKey, 0, f.combos())
	for _, c := range f.channels {
		for _, e := range exs {
			for _, s := range syms {
				out = append(out, subKey{c, e, s})
			}
		}
	}
	return out
}

// matchesPair reports whether a tick of (exchange, symbol) matches the
// filter's tick subscriptions.
func (f *filter) matchesPair(exchange, symbol string) bool {
	return (f.exchanges == nil || contains(f.exchanges, exchange)) &&
		(f.symbols == nil || contains(f.symbols, symbol))
}

func (f *filter) hasChannel(c channel) bool {
	for _, x := range f.channels {
		if x == c {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Server messages. Ticks, alerts and signals are built once per message by
// the hub (encodeTick, encodeEvent) and the same bytes go to every
// subscriber; the rest are per client and rare.

// encodeTick encodes a tick frame, with its position when part >= 0.
func encodeTick(b []byte, t *tick.Tick, part int32, off int64) []byte {
	b = append(b, `{"type":"tick",`...)
	if part >= 0 {
		b = append(b, `"part":`...)
		b = strconv.AppendInt(b, int64(part), 10)
		b = append(b, `,"off":`...)
		b = strconv.AppendInt(b, off, 10)
		b = append(b, ',')
	}
	b = append(b, `"data":`...)
	b = t.AppendJSON(b)
	return append(b, '}')
}

func encodeEvent(c channel, key string, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+len(key)+40)
	b = append(b, `{"type":"`...)
	b = append(b, c.String()...)
	b = append(b, `","key":`...)
	k, _ := json.Marshal(key)
	b = append(b, k...)
	b = append(b, `,"data":`...)
	b = append(b, payload...)
	return append(b, '}')
}

type subscribedMsg struct {
	Type          string    `json:"type"`
	Channels      []string  `json:"channels"`
	Exchanges     []string  `json:"exchanges"`
	Symbols       []string  `json:"symbols"`
	Subscriptions int       `json:"subscriptions"`
	Snapshot      int       `json:"snapshot"`
	Position      *position `json:"position,omitempty"`
	// Set only in reply to a subscribe with since.
	Recovered *bool     `json:"recovered,omitempty"`
	Recovery  *recovery `json:"recovery,omitempty"`
}

// recovery reports on a resume: how many missed ticks follow, or why
// none could be replayed and which offsets are gone for good.
type recovery struct {
	Ticks  int         `json:"ticks"`
	Reason string      `json:"reason,omitempty"`
	Lost   []lostRange `json:"lost,omitempty"`
}

// lostRange is a range of a partition's offsets (inclusive) the broker no
// longer holds: records of every pair on the partition, so an upper bound
// on the client's missed ticks.
type lostRange struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

func encodeSubscribed(typ string, f *filter, total, snapshot int) []byte {
	return encodeReply(subscribedMsg{Type: typ, Subscriptions: total, Snapshot: snapshot}, f)
}

func encodeReply(m subscribedMsg, f *filter) []byte {
	m.Exchanges, m.Symbols = f.exchanges, f.symbols
	for _, c := range f.channels {
		m.Channels = append(m.Channels, c.String())
	}
	// An empty list on the wire means "all", as in the request.
	if m.Exchanges == nil {
		m.Exchanges = []string{}
	}
	if m.Symbols == nil {
		m.Symbols = []string{}
	}
	b, _ := json.Marshal(m)
	return b
}

func encodeError(code, msg string) []byte {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, msg})
	return b
}

func encodeConflated(skipped uint64) []byte {
	b := append([]byte(`{"type":"conflated","skipped":`), strconv.FormatUint(skipped, 10)...)
	return append(b, '}')
}

func encodePositionFrame(p *position) []byte {
	b, _ := json.Marshal(struct {
		Type     string    `json:"type"`
		Position *position `json:"position"`
	}{"position", p})
	return b
}

var pongFrame = []byte(`{"type":"pong"}`)
