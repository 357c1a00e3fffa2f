package kraken

import (
	"strconv"

	"github.com/cockroachdb/apd/v3"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

// Decoder decodes Kraken spot v2 frames. It keeps a per-symbol instrument
// cache, so each connection's read loop owns one; it is not safe for
// concurrent use.
//
// Field rules (what makes an entry a Reject rather than a record):
//
//   - ticker: symbol, last and timestamp are required (the event time is
//     never the local clock); bid, ask, bid_qty, ask_qty, volume, low,
//     high and change are optional, absent or null being zero. Open24h is
//     last − change, exactly. The quote needs bid, ask and both sizes.
//   - trade: symbol, side, price, qty, trade_id and timestamp are
//     required; side is the taker's and kept. trade_id is a sequence per
//     book, so it is a contiguous Seq. A snapshot repeats up to the last 50
//     trades: a consumer drops trade_ids it has seen.
type Decoder struct {
	// Topics, when set, is what the connection subscribed: entries for
	// any other channel or symbol are refused with
	// wire.ReasonUnknownStream. (Kraken pushes many symbols in one frame,
	// so the check is per entry.)
	Topics *wire.Topics
	assets wire.Assets
}

// NewDecoder returns a decoder; topics and resolver may be nil.
func NewDecoder(topics *wire.Topics, resolver *instrument.Resolver) *Decoder {
	return &Decoder{Topics: topics, assets: wire.Assets{Exchange: Exchange, Resolver: resolver}}
}

var _ wire.Decoder = (*Decoder)(nil)

type envelope struct {
	Channel string            `json:"channel"`
	Type    string            `json:"type"`
	Data    *[]jsontext.Value `json:"data"`

	Method  string   `json:"method"`
	Success *bool    `json:"success"`
	Error   string   `json:"error"`
	Symbol  string   `json:"symbol"`
	ReqID   wire.Num `json:"req_id"`
	Result  *struct {
		Channel string `json:"channel"`
		Symbol  string `json:"symbol"`
	} `json:"result"`
}

// Decode decodes one frame: a channel message ({"channel":…}) or a method
// response ({"method":…}).
func (d *Decoder) Decode(frame []byte, receivedAt int64, f *wire.Frame) error {
	if err := wire.Check(frame); err != nil {
		return err
	}
	var env envelope
	if err := wire.Unmarshal(frame, &env); err != nil {
		return err
	}
	if env.Method != "" {
		return d.method(&env, f)
	}
	switch env.Channel {
	case "":
		return wire.Fail(wire.ReasonUnexpected, "neither a channel message nor a method response")
	case "heartbeat":
		f.Kind = wire.Heartbeat
		return nil
	case "status":
		return d.status(&env, f)
	case Ticker, Trade:
	default:
		return wire.Fail(wire.ReasonUnknownStream, "channel "+strconv.Quote(env.Channel)+" is not one this decoder reads")
	}
	if env.Data == nil {
		return wire.Fail(wire.ReasonMissingField, "no data")
	}
	f.Kind = wire.Data
	for i, raw := range *env.Data {
		var sym string
		var err error
		if env.Channel == Ticker {
			sym, err = d.ticker(raw, receivedAt, f)
		} else {
			sym, err = d.trade(raw, receivedAt, f)
		}
		if err != nil {
			f.Rejects = append(f.Rejects, wire.Reject{Channel: env.Channel, Symbol: sym, Index: i, Reason: wire.ReasonOf(err), Err: err})
		}
	}
	return nil
}

func (d *Decoder) method(env *envelope, f *wire.Frame) error {
	c := &f.Control
	c.ReqID, c.Message = string(env.ReqID.Raw), env.Error
	failed := env.Success != nil && !*env.Success
	if env.Result != nil {
		c.Channel = env.Result.Channel
		if env.Result.Symbol != "" {
			c.Symbols = []string{env.Result.Symbol}
		}
	} else if env.Symbol != "" {
		c.Symbols = []string{env.Symbol}
	}
	switch {
	case env.Method == "subscribe" && failed, env.Method == "unsubscribe" && failed:
		f.Kind = wire.SubscribeError
	case env.Method == "subscribe":
		f.Kind = wire.Subscribed
	case env.Method == "unsubscribe":
		f.Kind = wire.Unsubscribed
	case env.Method == "pong":
		f.Kind = wire.Pong
	case failed:
		f.Kind = wire.Error
	default:
		*c = wire.Control{}
		return wire.Fail(wire.ReasonUnexpected, "method "+strconv.Quote(env.Method))
	}
	return nil
}

// status is sent on connect and when the engine's state changes. Anything
// but online means the markets are not trading normally; maintenance is a
// Notice (the server is going away), the rest Status.
func (d *Decoder) status(env *envelope, f *wire.Frame) error {
	f.Kind = wire.Status
	if env.Data == nil || len(*env.Data) == 0 {
		return nil
	}
	var s struct {
		System     string `json:"system"`
		APIVersion string `json:"api_version"`
		Version    string `json:"version"`
	}
	if err := wire.Unmarshal((*env.Data)[0], &s); err != nil {
		f.Kind = 0
		return err
	}
	f.Control = wire.Control{Channel: "status", Message: "system=" + s.System + " api_version=" + s.APIVersion + " version=" + s.Version}
	if s.System == "maintenance" {
		f.Kind = wire.Notice
		f.Control.Code = s.System
	}
	return nil
}

type tickerEntry struct {
	Symbol    string   `json:"symbol"`
	Bid       wire.Num `json:"bid"`
	BidQty    wire.Num `json:"bid_qty"`
	Ask       wire.Num `json:"ask"`
	AskQty    wire.Num `json:"ask_qty"`
	Last      wire.Num `json:"last"`
	Volume    wire.Num `json:"volume"`
	Low       wire.Num `json:"low"`
	High      wire.Num `json:"high"`
	Change    wire.Num `json:"change"`
	Timestamp string   `json:"timestamp"`
}

// exact is the context for last − change: enough digits that any two
// prices Kraken sends subtract without rounding.
var exact = apd.BaseContext.WithPrecision(60)

func (d *Decoder) entrySymbol(channel, sym string) error {
	switch {
	case sym == "":
		return wire.Fail(wire.ReasonMissingField, "no symbol")
	case !d.Topics.Has(channel, sym):
		return wire.Fail(wire.ReasonUnknownStream, channel+" "+strconv.Quote(sym)+" was not subscribed")
	}
	return nil
}

func (d *Decoder) ticker(raw []byte, receivedAt int64, f *wire.Frame) (string, error) {
	var e tickerEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return "", err
	}
	if err := d.entrySymbol(Ticker, e.Symbol); err != nil {
		return e.Symbol, err
	}
	ts, err := wire.RFC3339Millis(e.Timestamp, "timestamp")
	if err != nil {
		return e.Symbol, err
	}
	t := tick.Tick{Exchange: Exchange, Symbol: e.Symbol, Timestamp: ts, ReceivedAt: receivedAt}
	if err := e.Last.Decimal(&t.Price, "last"); err != nil {
		return e.Symbol, err
	}
	var change, bidQty, askQty apd.Decimal
	for _, o := range [...]struct {
		n    *wire.Num
		d    *apd.Decimal
		name string
	}{
		{&e.Bid, &t.Bid, "bid"}, {&e.Ask, &t.Ask, "ask"}, {&e.Volume, &t.Volume, "volume"},
		{&e.Low, &t.Low24h, "low"}, {&e.High, &t.High24h, "high"}, {&e.Change, &change, "change"},
		{&e.BidQty, &bidQty, "bid_qty"}, {&e.AskQty, &askQty, "ask_qty"},
	} {
		if err := o.n.OptDecimal(o.d, o.name); err != nil {
			return e.Symbol, err
		}
	}
	if e.Change.Set && !e.Change.Null {
		if _, err := exact.Sub(&t.Open24h, &t.Price, &change); err != nil {
			return e.Symbol, wire.Fail(wire.ReasonBadField, "last − change: "+err.Error())
		}
	}
	if err := t.Validate(); err != nil {
		return e.Symbol, wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Ticks = append(f.Ticks, t)
	if t.Bid.Sign() > 0 && t.Ask.Sign() > 0 && e.BidQty.Set && e.AskQty.Set {
		q := wire.Quote{Exchange: Exchange, Symbol: e.Symbol, Timestamp: ts, ReceivedAt: receivedAt}
		q.Base, q.Quote = d.assets.Of(e.Symbol)
		q.Bid.Set(&t.Bid)
		q.Ask.Set(&t.Ask)
		q.BidSize.Set(&bidQty)
		q.AskSize.Set(&askQty)
		if q.Validate() == nil {
			f.Quotes = append(f.Quotes, q)
		}
	}
	return e.Symbol, nil
}

type tradeEntry struct {
	Symbol    string   `json:"symbol"`
	Side      string   `json:"side"`
	Price     wire.Num `json:"price"`
	Qty       wire.Num `json:"qty"`
	TradeID   wire.Num `json:"trade_id"`
	Timestamp string   `json:"timestamp"`
}

func (d *Decoder) trade(raw []byte, receivedAt int64, f *wire.Frame) (string, error) {
	var e tradeEntry
	if err := wire.Unmarshal(raw, &e); err != nil {
		return "", err
	}
	if err := d.entrySymbol(Trade, e.Symbol); err != nil {
		return e.Symbol, err
	}
	ts, err := wire.RFC3339Millis(e.Timestamp, "timestamp")
	if err != nil {
		return e.Symbol, err
	}
	id, err := e.TradeID.Uint("trade_id")
	if err != nil {
		return e.Symbol, err
	}
	t := tick.Trade{Exchange: Exchange, Symbol: e.Symbol, TradeID: strconv.FormatUint(id, 10), Timestamp: ts, ReceivedAt: receivedAt}
	t.Base, t.Quote = d.assets.Of(e.Symbol)
	switch tick.Side(e.Side) {
	case tick.Buy:
		t.Side = tick.Buy
	case tick.Sell:
		t.Side = tick.Sell
	case "":
		return e.Symbol, wire.Fail(wire.ReasonMissingField, "no side")
	default:
		return e.Symbol, wire.Fail(wire.ReasonBadField, "side "+strconv.Quote(e.Side))
	}
	if err := e.Price.Decimal(&t.Price, "price"); err != nil {
		return e.Symbol, err
	}
	if err := e.Qty.Decimal(&t.Size, "qty"); err != nil {
		return e.Symbol, err
	}
	if err := t.Validate(); err != nil {
		return e.Symbol, wire.Fail(wire.ReasonInvalid, err.Error())
	}
	f.Trades = append(f.Trades, t)
	f.Seqs = append(f.Seqs, wire.Seq{Channel: Trade, Symbol: e.Symbol, Field: "trade_id", Value: id, Contiguous: true})
	return e.Symbol, nil
}
