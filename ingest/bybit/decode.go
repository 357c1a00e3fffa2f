package bybit

import (
	"strconv"

	"github.com/cockroachdb/apd/v3"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Decoder decodes Bybit v5 public spot frames. It keeps per-symbol state
// (the instrument cache and orderbook.1's top of book), so each
// connection's read loop owns one; it is not safe for concurrent use.
//
// Field rules (what makes an entry a Reject rather than a record):
//
//   - tickers: the push's ts and the data's symbol and lastPrice are
//     required; highPrice24h, lowPrice24h, prevPrice24h (→ Open24h),
//     volume24h and turnover24h (→ QuoteVolume) are optional, absent or ""
//     being zero. A "delta" tickers push (derivatives only) is refused: it
//     carries only changed fields.
//   - publicTrade: T, s, S, v, p and i are required; S ("Buy"/"Sell") is the
//     taker's side. seq (cross sequence) is optional.
//   - orderbook.1: s and u are required, as is a price and size on each
//     side of a snapshot. A delta changes only the sides it lists (size "0"
//     clears a side); a quote is emitted once both sides are known.
type Decoder struct {
	// Topics, when set, is what the connection subscribed (channel,
	// symbol): pushes for anything else are wire.ReasonUnknownStream.
	Topics *wire.Topics
	assets wire.Assets
	book   map[string]*top
}

type top struct {
	bid, bidSz, ask, askSz apd.Decimal
	hasBid, hasAsk         bool
}

// NewDecoder returns a decoder; topics and resolver may be nil.
func NewDecoder(topics *wire.Topics, resolver *instrument.Resolver) *Decoder {
	return &Decoder{Topics: topics, assets: wire.Assets{Exchange: Exchange, Resolver: resolver}, book: map[string]*top{}}
}

var _ wire.Decoder = (*Decoder)(nil)

type envelope struct {
	Topic   string         `json:"topic"`
	Type    string         `json:"type"`
	Ts      wire.Num       `json:"ts"`
	Data    jsontext.Value `json:"data"`
	Success *bool          `json:"success"`
	RetMsg  string         `json:"ret_msg"`
	Op      string         `json:"op"`
	ReqID   string         `json:"req_id"`
	Args    jsontext.Value `json:"args"`
}

// Decode decodes one frame: a topic push or an op response (subscribe,
// unsubscribe, ping/pong).
func (d *Decoder) Decode(frame []byte, receivedAt int64, f *wire.Frame) error {
	if err := wire.Check(frame); err != nil {
		return err
	}
	var env envelope
	if err := wire.Unmarshal(frame, &env); err != nil {
		return err
	}
	if env.Topic == "" {
		return d.op(&env, f)
	}
	ch, sym, ok := splitTopic(env.Topic)
	if !ok {
		return wire.Fail(wire.ReasonUnexpected, "topic "+strconv.Quote(env.Topic))
	}
	if !d.Topics.Has(ch, sym) {
		return wire.Fail(wire.ReasonUnknownStream, strconv.Quote(env.Topic)+" was not subscribed")
	}
	if len(env.Data) == 0 {
		return wire.Fail(wire.ReasonMissingField, "push has no data")
	}
	var err error
	switch ch {
	case Tickers:
		if env.Type == "delta" {
			return wire.Fail(wire.ReasonUnexpected, "tickers delta: only derivatives send them, and they need the last snapshot")
		}
		f.Kind = wire.Data
		err = d.ticker(&env, sym, receivedAt, f)
	case Trades:
		var entries []jsontext.Value
		if err := wire.Unmarshal(env.Data, &entries); err != nil {
			return err
		}
		f.Kind = wire.Data
		for i, raw := range entries {
			if err := d.trade(raw, sym, receivedAt, f); err != nil {
				f.Rejects = append(f.Rejects, wire.Reject{Channel: ch, Symbol: sym, Index: i, Reason: wire.ReasonOf(err), Err: err})
			}
		}
		return nil
	case Book1:
		f.Kind = wire.Data
		err = d.book1(&env, sym, receivedAt, f)
	default:
		return wire.Fail(wire.ReasonUnknownStream, "channel "+strconv.Quote(ch)+" is not one this decoder reads")
	}
	if err != nil {
		f.Rejects = append(f.Rejects, wire.Reject{Channel: ch, Symbol: sym, Reason: wire.ReasonOf(err), Err: err})
	}
	return nil
}

func (d *Decoder) op(env *envelope, f *wire.Frame) error {
	c := &f.Control
	c.ReqID, c.Message = env.ReqID, env.RetMsg
	failed := env.Success != nil && !*env.Success
	switch {
	case env.Op == "subscribe" && failed, env.Op == "unsubscribe" && failed:
		f.Kind = wire.SubscribeError
	case env.Op == "subscribe":
		f.Kind = wire.Subscribed
	case env.Op == "unsubscribe":
		f.Kind = wire.Unsubscribed
	case env.Op == "ping" && failed:
		f.Kind = wire.Error
	case env.Op == "ping" && env.RetMsg == "pong", env.Op == "pong":
		// Spot answers {"op":"ping","ret_msg":"pong"}; linear and inverse
		// answer {"op":"pong"}.
		f.Kind = wire.Pong
	case failed:
		f.Kind = wire.Error
	default:
		*c = wire.Control{}
		return wire.Fail(wire.ReasonUnexpected, "neither a topic push nor an op response")
	}
	return nil
}

type tickerData struct {
	Symbol       string   `json:"symbol"`
	LastPrice    wire.Num `json:"lastPrice"`
	HighPrice24h wire.Num `json:"highPrice24h"`
	LowPrice24h  wire.Num `json:"lowPrice24h"`
	PrevPrice24h wire.Num `json:"prevPrice24h"`
	Volume24h    wire.Num `json:"volume24h"`
	Turnover24h  wire.Num `json:"turnover24h"`
}

func (d *Decoder) ticker(env *envelope, sym string, receivedAt int64, f *wire.Frame) error {
	var e tickerData
	if err := wire.Unmarshal(env.Data, &e); err != nil {
		return err
	}
	switch {
	case e.Symbol == "":
		return wire.Fail(wire.ReasonMissingField, "no symbol")
	case e.Symbol != sym:
		return wire.Fail(wire.ReasonSymbolMismatch, "symbol "+strconv.Quote(e.Symbol)+" on the topic of "+sym)
	}
	ts, err := env.Ts.Millis("ts")
	if err != nil {
		return err
	}
	t := tick.Tick{Exchange: Exchange, Symbol: sym, Timestamp: ts, ReceivedAt: receivedAt}
	if err := e.LastPrice.Decimal(&t.Price, "lastPrice"); err != nil {
		return err
	}
	for _, o := range [...]struct {
		n    *wire.Num
		d    *apd.Decimal
		name string
	}{
		{&e.HighPrice24h, &t.High24h, "highPrice24h"}, {&e.LowPrice24h, &t.Low24h, "lowPrice24h"},
		{&e.PrevPrice24h, &t.Open24h, "prevPrice24h"}, {&e.Volume24h, &t.Volume, "volume24h"},
		{&e.Turnover24h, &t.QuoteVolume, "turnover24h"},
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

// tradeEntry's one-letter keys differ only in case (s symbol, S side):
// wire.Unmarshal matches them exactly.
type tradeEntry struct {
	T   wire.Num `json:"T"`
	S   string   `json:"S"`
	Sym string   `json:"s"`
	V   wire.Num `json:"v"`
	P   wire.Num `json:"p"`
	I   wire.Num `json:"i"`
	Seq wire.Num `json:"seq"`
}

func (d *Decoder) trade(raw []byte, sym string, receivedAt int64, f *wire.Frame) error {
	var e tradeEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return err
	}
	switch {
	case e.Sym == "":
		return wire.Fail(wire.ReasonMissingField, "no s")
	case e.Sym != sym:
		return wire.Fail(wire.ReasonSymbolMismatch, "s "+strconv.Quote(e.Sym)+" on the topic of "+sym)
	}
	ts, err := e.T.Millis("T")
	if err != nil {
		return err
	}
	id, err := e.I.Text("i")
	if err != nil {
		return err
	}
	t := tick.Trade{Exchange: Exchange, Symbol: sym, TradeID: id, Timestamp: ts, ReceivedAt: receivedAt}
	t.Base, t.Quote = d.assets.Of(sym)
	switch e.S {
	case "Buy":
		t.Side = tick.Buy
	case "Sell":
		t.Side = tick.Sell
	case "":
		return wire.Fail(wire.ReasonMissingField, "no S")
	default:
		return wire.Fail(wire.ReasonBadField, "S "+strconv.Quote(e.S))
	}
	if err := e.P.Decimal(&t.Price, "p"); err != nil {
		return err
	}
	if err := e.V.Decimal(&t.Size, "v"); err != nil {
		return err
	}
	if err := t.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Trades = append(f.Trades, t)
	// Trade ids are not sequential (UUIDs on some markets); seq, the cross
	// sequence, only increases.
	if e.Seq.Set {
		if v, err := e.Seq.Uint("seq"); err == nil {
			f.Seqs = append(f.Seqs, wire.Seq{Channel: Trades, Symbol: sym, Field: "seq", Value: v})
		}
	}
	return nil
}

type bookData struct {
	S   string       `json:"s"`
	B   [][]wire.Num `json:"b"`
	A   [][]wire.Num `json:"a"`
	U   wire.Num     `json:"u"`
	Seq wire.Num     `json:"seq"`
}

// level is one side's change in a push: absent (leave the side), cleared
// (size 0) or set.
type level struct {
	px, sz         apd.Decimal
	present, clear bool
}

func parseLevel(levels [][]wire.Num, name string, l *level) error {
	if len(levels) == 0 {
		return nil
	}
	if len(levels[0]) < 2 {
		return wire.Fail(wire.ReasonBadField, name+"[0] has fewer than price and size")
	}
	if err := levels[0][0].Decimal(&l.px, name+"[0] price"); err != nil {
		return err
	}
	if err := levels[0][1].Decimal(&l.sz, name+"[0] size"); err != nil {
		return err
	}
	l.present, l.clear = true, l.sz.IsZero()
	return nil
}

func (l *level) apply(px, sz *apd.Decimal, has *bool) {
	switch {
	case !l.present:
	case l.clear:
		*has = false
	default:
		px.Set(&l.px)
		sz.Set(&l.sz)
		*has = true
	}
}

func (d *Decoder) book1(env *envelope, sym string, receivedAt int64, f *wire.Frame) error {
	var e bookData
	if err := wire.Unmarshal(env.Data, &e); err != nil {
		return err
	}
	switch {
	case e.S == "":
		return wire.Fail(wire.ReasonMissingField, "no s")
	case e.S != sym:
		return wire.Fail(wire.ReasonSymbolMismatch, "s "+strconv.Quote(e.S)+" on the topic of "+sym)
	}
	ts, err := env.Ts.Millis("ts")
	if err != nil {
		return err
	}
	u, err := e.U.Uint("u")
	if err != nil {
		return err
	}
	snapshot := env.Type != "delta"
	if snapshot && len(e.B) == 0 && len(e.A) == 0 {
		return wire.Fail(wire.ReasonMissingField, "snapshot with neither b nor a")
	}
	var bid, ask level
	if err := parseLevel(e.B, "b", &bid); err != nil {
		return err
	}
	if err := parseLevel(e.A, "a", &ask); err != nil {
		return err
	}
	st := d.book[sym]
	if st == nil || snapshot {
		if st == nil && len(d.book) >= 4096 {
			return wire.Fail(wire.ReasonUnexpected, "more than 4096 books on one connection")
		}
		if st == nil {
			st = &top{}
			d.book[sym] = st
		}
		st.hasBid, st.hasAsk = false, false // a snapshot replaces the book
	}
	bid.apply(&st.bid, &st.bidSz, &st.hasBid)
	ask.apply(&st.ask, &st.askSz, &st.hasAsk)
	// u is the book's update id; orderbook.1 does not push every update,
	// so it only increases. u = 1 means Bybit's book service restarted.
	f.Seqs = append(f.Seqs, wire.Seq{Channel: Book1, Symbol: sym, Field: "u", Value: u, Reset: u == 1})
	if !st.hasBid || !st.hasAsk {
		return nil
	}
	q := wire.Quote{Exchange: Exchange, Symbol: sym, Timestamp: ts, ReceivedAt: receivedAt}
	q.Base, q.Quote = d.assets.Of(sym)
	q.Bid.Set(&st.bid)
	q.BidSize.Set(&st.bidSz)
	q.Ask.Set(&st.ask)
	q.AskSize.Set(&st.askSz)
	if err := q.Validate(); err != nil {
		return wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Quotes = append(f.Quotes, q)
	return nil
}
