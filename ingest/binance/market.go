package binance

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Stream kinds: the suffixes of Binance's stream names.
const (
	KindTicker = "ticker"     // <symbol>@ticker: 24hrTicker, every second
	KindTrade  = "trade"      // <symbol>@trade: every trade, real time
	KindBook   = "bookTicker" // <symbol>@bookTicker: best bid/ask on every change
)

// Decoder decodes every frame of a Binance combined-stream connection into
// a wire.Frame: 24hrTicker events to ticks (through the hand-written
// scanner, decode.go: the ticker is what every deployment follows),
// trade and bookTicker events to trades and quotes (through ingest/wire:
// exact decimals, no float64), error frames and serverShutdown to control
// frames. One per connection: its instrument cache is not safe for
// concurrent use.
//
// Field rules:
//   - trade: e "trade", s, t (trade id), p, q, T (trade time) and m are
//     required. m is "the buyer is the market maker", so the taker sold
//     when it is true: Side is the taker's. Binance numbers a symbol's
//     trades one by one, so t is a contiguous Seq (a jump is a gap).
//   - bookTicker: u (the book's update id), s, b, B, a, A are required.
//     Spot's bookTicker carries no event time: the quote's Timestamp is
//     the local receive time, in ms (rounded up). u only increases (not every book
//     update is a top-of-book change), so it is a Seq with no gap rule;
//     the connection manager uses it to tell the old and new connection's
//     copies of a quote apart during a rotation.
type Decoder struct {
	d      *decoder
	assets wire.Assets
}

// NewDecoder returns a decoder for the streams by name ("btcusdt@trade");
// resolver may be nil.
func NewDecoder(streams []string, resolver *instrument.Resolver) *Decoder {
	d := &decoder{streams: map[string]*stream{}}
	for _, s := range streams {
		d.add(s)
	}
	return d.frames(resolver)
}

func (d *decoder) frames(resolver *instrument.Resolver) *Decoder {
	return &Decoder{d: d, assets: wire.Assets{Exchange: Exchange, Resolver: resolver}}
}

// add registers a stream by name.
func (d *decoder) add(name string) {
	sym, kind, _ := strings.Cut(name, "@")
	d.streams[name] = &stream{symbol: strings.ToUpper(sym), kind: kind}
}

var _ wire.Decoder = (*Decoder)(nil)

// Decode decodes one frame.
func (x *Decoder) Decode(frame []byte, receivedAt int64, f *wire.Frame) error {
	if err := wire.Check(frame); err != nil {
		return err
	}
	// Binance writes "stream" first: the fast path picks the event's
	// decoder from it without scanning the frame twice.
	if st := x.d.streams[peekStream(frame)]; st != nil && st.kind != KindTicker {
		return x.market(frame, st, receivedAt, f)
	}
	f.Ticks = append(f.Ticks, tick.Tick{})
	t := &f.Ticks[len(f.Ticks)-1]
	kind, _, info, err := x.d.decode(frame, t)
	if kind != frameTicker {
		f.Ticks = f.Ticks[:len(f.Ticks)-1]
	}
	if err != nil {
		if m, ok := err.(*malformed); ok {
			if m.reason == reasonUnexpectedEvent || m.reason == reasonMissingField {
				// A trade or bookTicker event whose "stream" did not come
				// first: decode it properly.
				if name, ok := streamOf(frame); ok {
					if st := x.d.streams[name]; st != nil && st.kind != KindTicker {
						return x.market(frame, st, receivedAt, f)
					}
				}
			}
			return wire.Fail(m.reason, m.detail)
		}
		return err
	}
	switch kind {
	case frameTicker:
		t.ReceivedAt = receivedAt
		f.Kind = wire.Data
	case frameError:
		f.Kind = wire.Error
		f.Control.Message = info
	case frameShutdown:
		f.Kind = wire.Notice
		f.Control.Code = "serverShutdown"
	}
	return nil
}

// peekStream is the stream name of a frame that starts {"stream":"…", or "".
func peekStream(frame []byte) string {
	const prefix = `{"stream":"`
	if !bytes.HasPrefix(frame, []byte(prefix)) {
		return ""
	}
	rest := frame[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return ""
	}
	return unsafeString(rest[:end])
}

// streamOf decodes the frame's "stream" member, wherever it is.
func streamOf(frame []byte) (string, bool) {
	var env struct {
		Stream string `json:"stream"`
	}
	if wire.Unmarshal(frame, &env) != nil || env.Stream == "" {
		return "", false
	}
	return env.Stream, true
}

type tradeEvent struct {
	Event     string   `json:"e"`
	Symbol    string   `json:"s"`
	ID        wire.Num `json:"t"`
	Price     wire.Num `json:"p"`
	Qty       wire.Num `json:"q"`
	Time      wire.Num `json:"T"`
	BuyerMkr  *bool    `json:"m"`
	EventTime wire.Num `json:"E"`
}

type bookEvent struct {
	UpdateID wire.Num `json:"u"`
	Symbol   string   `json:"s"`
	Bid      wire.Num `json:"b"`
	BidQty   wire.Num `json:"B"`
	Ask      wire.Num `json:"a"`
	AskQty   wire.Num `json:"A"`
}

// market decodes a trade or bookTicker event on stream st: one pass, the
// envelope and its event together.
func (x *Decoder) market(frame []byte, st *stream, receivedAt int64, f *wire.Frame) error {
	if st.kind == KindTrade {
		var env struct {
			Data *tradeEvent `json:"data"`
		}
		if err := wire.Unmarshal(frame, &env); err != nil {
			return err
		}
		if env.Data == nil {
			return wire.Fail(wire.ReasonMissingField, "no data")
		}
		return x.trade(env.Data, st, receivedAt, f)
	}
	var env struct {
		Data *bookEvent `json:"data"`
	}
	if err := wire.Unmarshal(frame, &env); err != nil {
		return err
	}
	if env.Data == nil {
		return wire.Fail(wire.ReasonMissingField, "no data")
	}
	return x.book(env.Data, st, receivedAt, f)
}

func (x *Decoder) trade(e *tradeEvent, st *stream, receivedAt int64, f *wire.Frame) error {
	switch {
	case e.Event == "":
		return wire.Fail(wire.ReasonMissingField, "event has no e (event type)")
	case e.Event != "trade":
		return wire.Fail(reasonUnexpectedEvent, "event type "+strconv.Quote(e.Event)+" on a trade stream")
	case e.Symbol == "":
		return wire.Fail(wire.ReasonMissingField, "event has no s (symbol)")
	case e.Symbol != st.symbol:
		return wire.Fail(wire.ReasonSymbolMismatch, "symbol "+strconv.Quote(e.Symbol)+" on the stream of "+st.symbol)
	case e.BuyerMkr == nil:
		return wire.Fail(wire.ReasonMissingField, "event has no m (buyer is maker)")
	}
	id, err := e.ID.Uint("t")
	if err != nil {
		return err
	}
	ts, err := e.Time.Millis("T")
	if err != nil {
		return err
	}
	t := tick.Trade{Exchange: Exchange, Symbol: st.symbol, TradeID: strconv.FormatUint(id, 10), Timestamp: ts, ReceivedAt: receivedAt}
	t.Base, t.Quote = x.assets.Of(st.symbol)
	// m: the buyer was the resting order, so the taker sold.
	t.Side = tick.Buy
	if *e.BuyerMkr {
		t.Side = tick.Sell
	}
	if err := e.Price.Decimal(&t.Price, "p"); err != nil {
		return err
	}
	if err := e.Qty.Decimal(&t.Size, "q"); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Kind = wire.Data
	f.Trades = append(f.Trades, t)
	f.Seqs = append(f.Seqs, wire.Seq{Channel: KindTrade, Symbol: st.symbol, Field: "t", Value: id, Contiguous: true})
	return nil
}

func (x *Decoder) book(e *bookEvent, st *stream, receivedAt int64, f *wire.Frame) error {
	switch {
	case e.Symbol == "":
		return wire.Fail(wire.ReasonMissingField, "event has no s (symbol)")
	case e.Symbol != st.symbol:
		return wire.Fail(wire.ReasonSymbolMismatch, "symbol "+strconv.Quote(e.Symbol)+" on the stream of "+st.symbol)
	}
	u, err := e.UpdateID.Uint("u")
	if err != nil {
		return err
	}
	// No event time: the receive time, rounded up to the millisecond so
	// that no positive receive time makes a zero one.
	q := tick.Quote{Exchange: Exchange, Symbol: st.symbol, Timestamp: (receivedAt + 999) / 1000, ReceivedAt: receivedAt}
	q.Base, q.Quote = x.assets.Of(st.symbol)
	for _, fld := range [...]struct {
		n   *wire.Num
		dst *apd.Decimal
		key string
	}{{&e.Bid, &q.Bid, "b"}, {&e.BidQty, &q.BidSize, "B"}, {&e.Ask, &q.Ask, "a"}, {&e.AskQty, &q.AskSize, "A"}} {
		if err := fld.n.Decimal(fld.dst, fld.key); err != nil {
			return err
		}
	}
	if err := q.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Kind = wire.Data
	f.Quotes = append(f.Quotes, q)
	f.Seqs = append(f.Seqs, wire.Seq{Channel: KindBook, Symbol: st.symbol, Field: "u", Value: u})
	return nil
}
