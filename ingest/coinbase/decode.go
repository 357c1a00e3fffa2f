package coinbase

import (
	"sort"
	"strconv"
	"strings"

	"github.com/cockroachdb/apd/v3"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Decoder decodes Coinbase Exchange and Advanced Trade frames. It keeps a
// per-product instrument cache, so each connection's read loop owns one;
// it is not safe for concurrent use.
//
// Field rules (what makes an entry a Reject rather than a record):
//
//   - Exchange ticker: product_id, price and time are required (Coinbase's
//     first ticker after subscribing can lack time: it is rejected, the
//     next one is not); open_24h, volume_24h, low_24h, high_24h, best_bid
//     and best_ask are optional, absent or "" being zero. A quote needs
//     best_bid, best_ask and both sizes. sequence becomes a Seq (it counts
//     every message of the product's full feed, so on ticker it only
//     increases).
//   - Exchange match and last_match: product_id, trade_id, price, size,
//     side and time are required; the taker's side is the opposite of
//     side. trade_id is contiguous per product.
//   - Exchange heartbeat: last_trade_id becomes a Latest Seq on matches.
//   - Advanced Trade ticker and ticker_batch: the envelope's timestamp and
//     each ticker's product_id and price are required; the rest optional as
//     above (there is no open_24h). Ticks take the envelope's timestamp.
type Decoder struct {
	// Topics, when set, is what the connection subscribed (channel,
	// product): anything else is wire.ReasonUnknownStream.
	Topics *wire.Topics
	assets wire.Assets
}

// NewDecoder returns a decoder; topics and resolver may be nil.
func NewDecoder(topics *wire.Topics, resolver *instrument.Resolver) *Decoder {
	return &Decoder{Topics: topics, assets: wire.Assets{Exchange: Exchange, Resolver: resolver}}
}

var _ wire.Decoder = (*Decoder)(nil)

// message is both formats' fields: Exchange messages are flat with
// "type"; Advanced Trade messages have "channel" and "events".
type message struct {
	Type        string   `json:"type"`
	ProductID   string   `json:"product_id"`
	Sequence    wire.Num `json:"sequence"`
	Time        string   `json:"time"`
	Price       wire.Num `json:"price"`
	Open24h     wire.Num `json:"open_24h"`
	Volume24h   wire.Num `json:"volume_24h"`
	Low24h      wire.Num `json:"low_24h"`
	High24h     wire.Num `json:"high_24h"`
	BestBid     wire.Num `json:"best_bid"`
	BestBidSize wire.Num `json:"best_bid_size"`
	BestAsk     wire.Num `json:"best_ask"`
	BestAskSize wire.Num `json:"best_ask_size"`
	TradeID     wire.Num `json:"trade_id"`
	Size        wire.Num `json:"size"`
	Side        string   `json:"side"`
	LastTradeID wire.Num `json:"last_trade_id"`
	Message     string   `json:"message"`
	Reason      string   `json:"reason"`
	Channels    []struct {
		Name       string   `json:"name"`
		ProductIDs []string `json:"product_ids"`
	} `json:"channels"`

	Channel     string           `json:"channel"`
	Timestamp   string           `json:"timestamp"`
	SequenceNum wire.Num         `json:"sequence_num"`
	Events      []jsontext.Value `json:"events"`
}

// Decode decodes one frame of either format.
func (d *Decoder) Decode(frame []byte, receivedAt int64, f *wire.Frame) error {
	if err := wire.Check(frame); err != nil {
		return err
	}
	var m message
	if err := wire.Unmarshal(frame, &m); err != nil {
		return err
	}
	if m.Channel != "" {
		return d.advanced(&m, receivedAt, f)
	}
	switch m.Type {
	case "ticker":
		if err := d.stream(Ticker, m.ProductID); err != nil {
			return err
		}
		f.Kind = wire.Data
		d.reject(f, Ticker, m.ProductID, d.exchangeTicker(&m, receivedAt, f))
	case "match", "last_match":
		if err := d.stream(Matches, m.ProductID); err != nil {
			return err
		}
		f.Kind = wire.Data
		d.reject(f, Matches, m.ProductID, d.match(&m, receivedAt, f))
	case "heartbeat":
		f.Kind = wire.Heartbeat
		if id, err := m.LastTradeID.Uint("last_trade_id"); err == nil && m.ProductID != "" {
			f.Seqs = append(f.Seqs, wire.Seq{Channel: Matches, Symbol: m.ProductID, Field: "trade_id", Value: id, Contiguous: true, Latest: true})
		}
	case "subscriptions":
		// Coinbase answers subscribe and unsubscribe alike, with every
		// subscription the connection now has.
		f.Kind = wire.Subscribed
		names := make([]string, 0, len(m.Channels))
		var products []string
		for _, c := range m.Channels {
			names = append(names, c.Name)
			products = append(products, c.ProductIDs...)
		}
		f.Control = wire.Control{Channel: strings.Join(names, ","), Symbols: uniq(products)}
	case "error":
		f.Kind = errorKind(m.Message)
		f.Control = wire.Control{Message: joinNonEmpty(m.Message, m.Reason)}
	case "":
		return wire.Fail(wire.ReasonUnexpected, "neither type nor channel")
	default:
		return wire.Fail(wire.ReasonUnknownStream, "message type "+strconv.Quote(m.Type)+" is not one this decoder reads")
	}
	return nil
}

func errorKind(msg string) wire.Kind {
	if strings.Contains(strings.ToLower(msg), "subscri") {
		return wire.SubscribeError
	}
	return wire.Error
}

func joinNonEmpty(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

func uniq(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	sort.Strings(s)
	out := s[:1]
	for _, v := range s[1:] {
		if v != out[len(out)-1] {
			out = append(out, v)
		}
	}
	return out
}

func (d *Decoder) stream(channel, product string) error {
	if product == "" {
		return wire.Fail(wire.ReasonMissingField, "no product_id")
	}
	if !d.Topics.Has(channel, product) {
		return wire.Fail(wire.ReasonUnknownStream, channel+" "+strconv.Quote(product)+" was not subscribed")
	}
	return nil
}

func (d *Decoder) reject(f *wire.Frame, channel, product string, err error) {
	if err != nil {
		f.Rejects = append(f.Rejects, wire.Reject{Channel: channel, Symbol: product, Reason: wire.ReasonOf(err), Err: err})
	}
}

type opt struct {
	n    *wire.Num
	d    *apd.Decimal
	name string
}

func optional(opts []opt) error {
	for _, o := range opts {
		if err := o.n.OptDecimal(o.d, o.name); err != nil {
			return err
		}
	}
	return nil
}

// quote appends the best bid/ask when all four figures are there.
func (d *Decoder) quote(f *wire.Frame, product string, ts, receivedAt int64, bid, bidSz, ask, askSz *wire.Num) error {
	for _, n := range []*wire.Num{bid, bidSz, ask, askSz} {
		if !n.Set || n.Null || len(n.Raw) == 0 {
			return nil
		}
	}
	q := wire.Quote{Exchange: Exchange, Symbol: product, Timestamp: ts, ReceivedAt: receivedAt}
	q.Base, q.Quote = d.assets.Of(product)
	for _, o := range [...]opt{{bid, &q.Bid, "best_bid"}, {bidSz, &q.BidSize, "bid size"}, {ask, &q.Ask, "best_ask"}, {askSz, &q.AskSize, "ask size"}} {
		if err := o.n.Decimal(o.d, o.name); err != nil {
			return err
		}
	}
	if err := q.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Quotes = append(f.Quotes, q)
	return nil
}

func (d *Decoder) exchangeTicker(m *message, receivedAt int64, f *wire.Frame) error {
	ts, err := wire.RFC3339Millis(m.Time, "time")
	if err != nil {
		return err
	}
	t := tick.Tick{Exchange: Exchange, Symbol: m.ProductID, Timestamp: ts, ReceivedAt: receivedAt}
	if err := m.Price.Decimal(&t.Price, "price"); err != nil {
		return err
	}
	if err := optional([]opt{
		{&m.Open24h, &t.Open24h, "open_24h"}, {&m.Volume24h, &t.Volume, "volume_24h"},
		{&m.Low24h, &t.Low24h, "low_24h"}, {&m.High24h, &t.High24h, "high_24h"},
		{&m.BestBid, &t.Bid, "best_bid"}, {&m.BestAsk, &t.Ask, "best_ask"},
	}); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	if err := d.quote(f, m.ProductID, ts, receivedAt, &m.BestBid, &m.BestBidSize, &m.BestAsk, &m.BestAskSize); err != nil {
		return err
	}
	f.Ticks = append(f.Ticks, t)
	if seq, err := m.Sequence.Uint("sequence"); err == nil {
		f.Seqs = append(f.Seqs, wire.Seq{Channel: Ticker, Symbol: m.ProductID, Field: "sequence", Value: seq})
	}
	return nil
}

func (d *Decoder) match(m *message, receivedAt int64, f *wire.Frame) error {
	ts, err := wire.RFC3339Millis(m.Time, "time")
	if err != nil {
		return err
	}
	id, err := m.TradeID.Uint("trade_id")
	if err != nil {
		return err
	}
	t := tick.Trade{Exchange: Exchange, Symbol: m.ProductID, TradeID: strconv.FormatUint(id, 10), Timestamp: ts, ReceivedAt: receivedAt}
	t.Base, t.Quote = d.assets.Of(m.ProductID)
	// "The side field indicates the maker order side": the taker took
	// the other one.
	switch tick.Side(m.Side) {
	case tick.Buy, tick.Sell:
		t.Side = tick.Side(m.Side).Opposite()
	case "":
		return wire.Fail(wire.ReasonMissingField, "no side")
	default:
		return wire.Fail(wire.ReasonBadField, "side "+strconv.Quote(m.Side))
	}
	if err := m.Price.Decimal(&t.Price, "price"); err != nil {
		return err
	}
	if err := m.Size.Decimal(&t.Size, "size"); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Trades = append(f.Trades, t)
	f.Seqs = append(f.Seqs, wire.Seq{Channel: Matches, Symbol: m.ProductID, Field: "trade_id", Value: id, Contiguous: true})
	return nil
}

// Advanced Trade.

type advancedTicker struct {
	ProductID string   `json:"product_id"`
	Price     wire.Num `json:"price"`
	Volume24h wire.Num `json:"volume_24_h"`
	Low24h    wire.Num `json:"low_24_h"`
	High24h   wire.Num `json:"high_24_h"`
	BestBid   wire.Num `json:"best_bid"`
	BestBidQ  wire.Num `json:"best_bid_quantity"`
	BestAsk   wire.Num `json:"best_ask"`
	BestAskQ  wire.Num `json:"best_ask_quantity"`
}

type advancedEvent struct {
	Type             string              `json:"type"`
	Tickers          []jsontext.Value    `json:"tickers"`
	Subscriptions    map[string][]string `json:"subscriptions"`
	HeartbeatCounter wire.Num            `json:"heartbeat_counter"`
}

func (d *Decoder) advanced(m *message, receivedAt int64, f *wire.Frame) error {
	switch m.Channel {
	case Ticker, TickerBatch:
	case Heartbeats:
		f.Kind = wire.Heartbeat
		for _, raw := range m.Events {
			var e advancedEvent
			if wire.Unmarshal(raw, &e) != nil {
				continue
			}
			if n, err := e.HeartbeatCounter.Uint("heartbeat_counter"); err == nil {
				// "heartbeat_counter ... verifies that no messages were
				// missed": it counts up by one per heartbeat.
				f.Seqs = append(f.Seqs, wire.Seq{Channel: Heartbeats, Field: "heartbeat_counter", Value: n, Contiguous: true})
			}
		}
		return nil
	case "subscriptions":
		f.Kind = wire.Subscribed
		var names, products []string
		for _, raw := range m.Events {
			var e advancedEvent
			if err := wire.Unmarshal(raw, &e); err != nil {
				f.Kind = 0
				return err
			}
			for ch, ps := range e.Subscriptions {
				names = append(names, ch)
				products = append(products, ps...)
			}
		}
		sort.Strings(names)
		f.Control = wire.Control{Channel: strings.Join(names, ","), Symbols: uniq(products)}
		return nil
	default:
		return wire.Fail(wire.ReasonUnknownStream, "channel "+strconv.Quote(m.Channel)+" is not one this decoder reads")
	}
	ts, err := wire.RFC3339Millis(m.Timestamp, "timestamp")
	if err != nil {
		return err // every ticker of the frame would lack its event time
	}
	f.Kind = wire.Data
	if n, err := m.SequenceNum.Uint("sequence_num"); err == nil {
		// sequence_num counts the connection's messages; documented as
		// increasing, not as without skips.
		f.Seqs = append(f.Seqs, wire.Seq{Channel: m.Channel, Field: "sequence_num", Value: n})
	}
	i := 0
	for _, raw := range m.Events {
		var e advancedEvent
		if err := wire.Unmarshal(raw, &e); err != nil {
			f.Rejects = append(f.Rejects, wire.Reject{Channel: m.Channel, Index: i, Reason: wire.ReasonOf(err), Err: err})
			i++
			continue
		}
		for _, tr := range e.Tickers {
			product, err := d.advancedTicker(m.Channel, tr, ts, receivedAt, f)
			if err != nil {
				f.Rejects = append(f.Rejects, wire.Reject{Channel: m.Channel, Symbol: product, Index: i, Reason: wire.ReasonOf(err), Err: err})
			}
			i++
		}
	}
	return nil
}

func (d *Decoder) advancedTicker(channel string, raw []byte, ts, receivedAt int64, f *wire.Frame) (string, error) {
	var e advancedTicker
	if err := wire.Unmarshal(raw, &e); err != nil {
		return "", err
	}
	if err := d.stream(channel, e.ProductID); err != nil {
		return e.ProductID, err
	}
	t := tick.Tick{Exchange: Exchange, Symbol: e.ProductID, Timestamp: ts, ReceivedAt: receivedAt}
	if err := e.Price.Decimal(&t.Price, "price"); err != nil {
		return e.ProductID, err
	}
	if err := optional([]opt{
		{&e.Volume24h, &t.Volume, "volume_24_h"}, {&e.Low24h, &t.Low24h, "low_24_h"}, {&e.High24h, &t.High24h, "high_24_h"},
		{&e.BestBid, &t.Bid, "best_bid"}, {&e.BestAsk, &t.Ask, "best_ask"},
	}); err != nil {
		return e.ProductID, err
	}
	if err := t.Validate(); err != nil {
		return e.ProductID, wire.Fail(wire.ReasonInvalid, err.Error())
	}
	if err := d.quote(f, e.ProductID, ts, receivedAt, &e.BestBid, &e.BestBidQ, &e.BestAsk, &e.BestAskQ); err != nil {
		return e.ProductID, err
	}
	f.Ticks = append(f.Ticks, t)
	return e.ProductID, nil
}
