package okx

import (
	"bytes"
	"strconv"

	"github.com/cockroachdb/apd/v3"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Decoder decodes OKX v5 public frames. It keeps a per-symbol instrument
// cache, so each connection's read loop owns one; it is not safe for
// concurrent use.
//
// Field rules (what makes an entry a Reject rather than a record):
//
//   - tickers: instId, last and ts are required; bidPx, askPx, open24h,
//     high24h, low24h, vol24h and volCcy24h are optional — absent or ""
//     (OKX sends "" for an empty book side) is zero. Volume is vol24h (base
//     asset for spot), QuoteVolume volCcy24h.
//   - trades: instId, tradeId, px, sz, side and ts are required; side is
//     the taker's and kept. count is optional.
//   - bbo-tbt, books5: ts, seqId and one level of each of asks and bids are
//     required (a one-sided book is rejected, not half a quote); the
//     instrument comes from the push's arg.
//
// A number may arrive as a JSON string (OKX's way) or a bare number; its
// text is parsed exactly either way.
type Decoder struct {
	// Topics, when set, is what the connection subscribed: pushes for any
	// other channel or instrument are refused with wire.ReasonUnknownStream.
	Topics *wire.Topics
	assets wire.Assets
}

// NewDecoder returns a decoder; topics and resolver may be nil.
func NewDecoder(topics *wire.Topics, resolver *instrument.Resolver) *Decoder {
	return &Decoder{Topics: topics, assets: wire.Assets{Exchange: Exchange, Resolver: resolver}}
}

var _ wire.Decoder = (*Decoder)(nil)

type envelope struct {
	Event     string            `json:"event"`
	Arg       *Arg              `json:"arg"`
	Data      *[]jsontext.Value `json:"data"`
	Code      wire.Num          `json:"code"`
	Msg       string            `json:"msg"`
	ID        string            `json:"id"`
	Channel   string            `json:"channel"`
	ConnCount wire.Num          `json:"connCount"`
}

// Decode decodes one frame: a push ({"arg":…,"data":[…]}), an event
// (subscribe, unsubscribe, error, notice, channel-conn-count), or the text
// "pong".
func (d *Decoder) Decode(frame []byte, receivedAt int64, f *wire.Frame) error {
	if err := wire.Check(frame); err != nil {
		return err
	}
	if string(bytes.TrimSpace(frame)) == "pong" {
		f.Kind = wire.Pong
		return nil
	}
	var env envelope
	if err := wire.Unmarshal(frame, &env); err != nil {
		return err
	}
	if env.Event != "" {
		return d.event(&env, f)
	}
	if env.Arg == nil || env.Data == nil {
		return wire.Fail(wire.ReasonUnexpected, "neither an event nor a push")
	}
	ch, inst := env.Arg.Channel, env.Arg.InstID
	if !d.Topics.Has(ch, inst) {
		return wire.Fail(wire.ReasonUnknownStream, ch+" "+strconv.Quote(inst)+" was not subscribed")
	}
	var entry func(raw []byte, ch, inst string, receivedAt int64, f *wire.Frame) error
	switch ch {
	case Tickers:
		entry = d.ticker
	case Trades:
		entry = d.trade
	case BBO, Books5:
		entry = d.book
	default:
		return wire.Fail(wire.ReasonUnknownStream, "channel "+strconv.Quote(ch)+" is not one this decoder reads")
	}
	if inst == "" {
		return wire.Fail(wire.ReasonMissingField, "push arg has no instId")
	}
	f.Kind = wire.Data
	for i, raw := range *env.Data {
		if err := entry(raw, ch, inst, receivedAt, f); err != nil {
			f.Rejects = append(f.Rejects, wire.Reject{Channel: ch, Symbol: inst, Index: i, Reason: wire.ReasonOf(err), Err: err})
		}
	}
	return nil
}

func (d *Decoder) event(env *envelope, f *wire.Frame) error {
	c := &f.Control
	c.ReqID, c.Message = env.ID, env.Msg
	c.Code = string(env.Code.Raw)
	if env.Arg != nil {
		c.Channel = env.Arg.Channel
		if env.Arg.InstID != "" {
			c.Symbols = []string{env.Arg.InstID}
		}
	}
	switch env.Event {
	case "subscribe":
		f.Kind = wire.Subscribed
	case "unsubscribe":
		f.Kind = wire.Unsubscribed
	case "error":
		// OKX answers a bad subscribe, unsubscribe or login with an error
		// event; we send nothing else that it answers.
		f.Kind = wire.SubscribeError
	case "notice":
		// 64008: "The connection will soon be closed for a service
		// upgrade. Please reconnect."
		f.Kind = wire.Notice
	case "channel-conn-count":
		f.Kind = wire.Status
		c.Channel = env.Channel
		c.Message = "connCount=" + string(env.ConnCount.Raw)
	case "channel-conn-count-error":
		f.Kind = wire.Error
		c.Channel = env.Channel
	default:
		*c = wire.Control{}
		return wire.Fail(wire.ReasonUnexpected, "event "+strconv.Quote(env.Event))
	}
	return nil
}

type tickerEntry struct {
	InstID    string   `json:"instId"`
	Last      wire.Num `json:"last"`
	BidPx     wire.Num `json:"bidPx"`
	AskPx     wire.Num `json:"askPx"`
	Open24h   wire.Num `json:"open24h"`
	High24h   wire.Num `json:"high24h"`
	Low24h    wire.Num `json:"low24h"`
	Vol24h    wire.Num `json:"vol24h"`
	VolCcy24h wire.Num `json:"volCcy24h"`
	Ts        wire.Num `json:"ts"`
}

func entrySymbol(got, inst string) error {
	if got != "" && got != inst {
		return wire.Fail(wire.ReasonSymbolMismatch, "instId "+strconv.Quote(got)+" in a push for "+inst)
	}
	return nil
}

func (d *Decoder) ticker(raw []byte, ch, inst string, receivedAt int64, f *wire.Frame) error {
	var e tickerEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return err
	}
	if err := entrySymbol(e.InstID, inst); err != nil {
		return err
	}
	ts, err := e.Ts.Millis("ts")
	if err != nil {
		return err
	}
	t := tick.Tick{Exchange: Exchange, Symbol: inst, Timestamp: ts, ReceivedAt: receivedAt}
	if err := e.Last.Decimal(&t.Price, "last"); err != nil {
		return err
	}
	for _, o := range [...]struct {
		n    *wire.Num
		d    *apd.Decimal
		name string
	}{
		{&e.BidPx, &t.Bid, "bidPx"}, {&e.AskPx, &t.Ask, "askPx"}, {&e.Open24h, &t.Open24h, "open24h"},
		{&e.High24h, &t.High24h, "high24h"}, {&e.Low24h, &t.Low24h, "low24h"},
		{&e.Vol24h, &t.Volume, "vol24h"}, {&e.VolCcy24h, &t.QuoteVolume, "volCcy24h"},
	} {
		if err := o.n.OptDecimal(o.d, o.name); err != nil {
			return err
		}
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Ticks = append(f.Ticks, t)
	return nil
}

type tradeEntry struct {
	InstID  string   `json:"instId"`
	TradeID wire.Num `json:"tradeId"`
	Px      wire.Num `json:"px"`
	Sz      wire.Num `json:"sz"`
	Side    string   `json:"side"`
	Ts      wire.Num `json:"ts"`
	Count   wire.Num `json:"count"`
}

func (d *Decoder) trade(raw []byte, ch, inst string, receivedAt int64, f *wire.Frame) error {
	var e tradeEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return err
	}
	if err := entrySymbol(e.InstID, inst); err != nil {
		return err
	}
	ts, err := e.Ts.Millis("ts")
	if err != nil {
		return err
	}
	id, err := e.TradeID.Text("tradeId")
	if err != nil {
		return err
	}
	t := tick.Trade{Exchange: Exchange, Symbol: inst, TradeID: id, Timestamp: ts, ReceivedAt: receivedAt}
	t.Base, t.Quote = d.assets.Of(inst)
	switch tick.Side(e.Side) {
	case tick.Buy:
		t.Side = tick.Buy
	case tick.Sell:
		t.Side = tick.Sell
	case "":
		return wire.Fail(wire.ReasonMissingField, "no side")
	default:
		return wire.Fail(wire.ReasonBadField, "side "+strconv.Quote(e.Side))
	}
	if err := e.Px.Decimal(&t.Price, "px"); err != nil {
		return err
	}
	if err := e.Sz.Decimal(&t.Size, "sz"); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Trades = append(f.Trades, t)
	// tradeId is "the last trade ID in the trades aggregation" of count
	// trades, so the previous push's last id should be tradeId-count. That
	// assumes OKX numbers each instrument's trades consecutively, which the
	// aggregation's description implies but no page states outright: a
	// gap detector should confirm it on live data before alerting on it.
	if v, err := e.TradeID.Uint("tradeId"); err == nil {
		s := wire.Seq{Channel: ch, Symbol: inst, Field: "tradeId", Value: v}
		if n, err := e.Count.Uint("count"); err == nil && n > 0 && n <= v {
			s.Prev, s.Contiguous = v-n, true
		}
		f.Seqs = append(f.Seqs, s)
	}
	return nil
}

type bookEntry struct {
	Asks      [][]wire.Num `json:"asks"`
	Bids      [][]wire.Num `json:"bids"`
	InstID    string       `json:"instId"`
	Ts        wire.Num     `json:"ts"`
	SeqID     wire.Num     `json:"seqId"`
	PrevSeqID wire.Num     `json:"prevSeqId"`
}

func topLevel(levels [][]wire.Num, side string, px, sz *apd.Decimal) error {
	if len(levels) == 0 {
		return wire.Fail(wire.ReasonMissingField, "no "+side)
	}
	if len(levels[0]) < 2 {
		return wire.Fail(wire.ReasonBadField, side+"[0] has fewer than price and size")
	}
	if err := levels[0][0].Decimal(px, side+"[0] price"); err != nil {
		return err
	}
	return levels[0][1].Decimal(sz, side+"[0] size")
}

func (d *Decoder) book(raw []byte, ch, inst string, receivedAt int64, f *wire.Frame) error {
	var e bookEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return err
	}
	if err := entrySymbol(e.InstID, inst); err != nil {
		return err
	}
	ts, err := e.Ts.Millis("ts")
	if err != nil {
		return err
	}
	seq, err := e.SeqID.Uint("seqId")
	if err != nil {
		return err
	}
	q := wire.Quote{Exchange: Exchange, Symbol: inst, Timestamp: ts, ReceivedAt: receivedAt}
	q.Base, q.Quote = d.assets.Of(inst)
	if err := topLevel(e.Bids, "bids", &q.Bid, &q.BidSize); err != nil {
		return err
	}
	if err := topLevel(e.Asks, "asks", &q.Ask, &q.AskSize); err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Quotes = append(f.Quotes, q)
	// seqId only increases (OKX does not promise +1 steps on bbo-tbt or
	// books5); prevSeqId, where sent, is the one before, -1 after a reset.
	s := wire.Seq{Channel: ch, Symbol: inst, Field: "seqId", Value: seq}
	if e.PrevSeqID.Set {
		if string(e.PrevSeqID.Raw) == "-1" {
			s.Reset = true
		} else if p, err := e.PrevSeqID.Uint("prevSeqId"); err == nil {
			s.Prev, s.Contiguous = p, true
		}
	}
	f.Seqs = append(f.Seqs, s)
	return nil
}
