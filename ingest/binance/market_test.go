package binance

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wire/wiretest"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/wstest"
	"github.com/tickflow/tickflow/tick"
)

func wireSamples(t testing.TB) []wiretest.Sample {
	return wiretest.Samples(t, "testdata/binance-spot.jsonl")
}

// marketDecoder follows the samples' streams: bnbbtc's ticker and trades,
// bnbusdt's best bid/ask.
func marketDecoder() *Decoder {
	return NewDecoder([]string{"bnbbtc@ticker", "bnbbtc@trade", "bnbusdt@bookTicker"}, nil)
}

func decodeFrame(t testing.TB, frame string) (*wire.Frame, error) {
	t.Helper()
	var f wire.Frame
	err := marketDecoder().Decode([]byte(frame), 1672515782136123, &f)
	if err == nil {
		wiretest.CheckFrame(t, []byte(frame), &f)
	}
	return &f, err
}

func TestDecodeDocumentedTradeAndBookTicker(t *testing.T) {
	s := wireSamples(t)
	f, err := decodeFrame(t, string(wiretest.Find(t, s, "trade event")))
	if err != nil || f.Kind != wire.Data || len(f.Trades) != 1 || len(f.Ticks)+len(f.Quotes) != 0 {
		t.Fatalf("trade: %+v, %v", f, err)
	}
	tr := f.Trades[0]
	// "m":true: the buyer was the maker, so the taker sold.
	if tr.Exchange != "binance" || tr.Symbol != "BNBBTC" || tr.Base != "BNB" || tr.Quote != "BTC" ||
		tr.Price.String() != "0.001" || tr.Size.String() != "100" || tr.Side != tick.Sell ||
		tr.TradeID != "12345" || tr.Timestamp != 1672515782136 || tr.ReceivedAt != 1672515782136123 {
		t.Errorf("trade %+v", tr)
	}
	if want := (wire.Seq{Channel: KindTrade, Symbol: "BNBBTC", Field: "t", Value: 12345, Contiguous: true}); len(f.Seqs) != 1 || f.Seqs[0] != want {
		t.Errorf("seqs %+v, want %+v", f.Seqs, want)
	}

	f, err = decodeFrame(t, string(wiretest.Find(t, s, "bookTicker event")))
	if err != nil || f.Kind != wire.Data || len(f.Quotes) != 1 || len(f.Ticks)+len(f.Trades) != 0 {
		t.Fatalf("bookTicker: %+v, %v", f, err)
	}
	q := f.Quotes[0]
	// Trailing zeros are kept: the decimals are the frame's text.
	if q.Symbol != "BNBUSDT" || q.Base != "BNB" || q.Quote != "USDT" || q.Bid.String() != "25.35190000" ||
		q.BidSize.String() != "31.21000000" || q.Ask.String() != "25.36520000" || q.AskSize.String() != "40.66000000" ||
		q.Timestamp != 1672515782137 || q.ReceivedAt != 1672515782136123 {
		t.Errorf("quote %+v", q)
	}
	if want := (wire.Seq{Channel: KindBook, Symbol: "BNBUSDT", Field: "u", Value: 400900217}); len(f.Seqs) != 1 || f.Seqs[0] != want {
		t.Errorf("seqs %+v, want %+v", f.Seqs, want)
	}

	// The ticker still decodes, with the same tick as the scanner's.
	f, err = decodeFrame(t, string(wiretest.Find(t, s, "24hrTicker event")))
	if err != nil || f.Kind != wire.Data || len(f.Ticks) != 1 || f.Ticks[0].Price.String() != "0.0025" || f.Ticks[0].ReceivedAt != 1672515782136123 {
		t.Fatalf("ticker: %+v, %v", f, err)
	}
}

const (
	docTrade = `{"stream":"bnbbtc@trade","data":{"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100","T":1672515782136,"m":false,"M":true}}`
	docBook  = `{"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}`
)

// trade and book rewrite one field of the documented events (value "" removes it).
func tradeWith(k, v string) string { return withField(docTrade, k, v) }
func bookWith(k, v string) string  { return withField(docBook, k, v) }

func withField(frame, k, v string) string {
	var env struct {
		Stream string                     `json:"stream"`
		Data   map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(frame), &env); err != nil {
		panic(err)
	}
	if v == "" {
		delete(env.Data, k)
	} else {
		env.Data[k] = json.RawMessage(v)
	}
	b, _ := json.Marshal(env)
	return string(b)
}

func TestDecodeTradeSide(t *testing.T) {
	for _, tc := range []struct {
		m    string
		want tick.Side
	}{{"true", tick.Sell}, {"false", tick.Buy}} {
		f, err := decodeFrame(t, tradeWith("m", tc.m))
		if err != nil || f.Trades[0].Side != tc.want {
			t.Errorf("m=%s: %+v, %v; want taker side %s", tc.m, f.Trades, err, tc.want)
		}
	}
}

// What real feeds do that the docs omit: unknown fields, keys in another
// order, data before the stream name.
func TestDecodeMarketToleratesWhatRealFeedsDo(t *testing.T) {
	for _, tc := range []struct{ name, frame string }{
		{"trade with unknown fields", tradeWith("X", `{"new":[1,2]}`)},
		{"trade without the optional event time", tradeWith("E", "")},
		{"trade, data first", `{"data":{"e":"trade","s":"BNBBTC","t":7,"p":"0.001","q":"1","T":1672515782136,"m":true},"stream":"bnbbtc@trade"}`},
		{"bookTicker with an event time", bookWith("E", "1672515782999")},
		{"bookTicker, data first", `{"data":{"u":5,"s":"BNBUSDT","b":"1.0","B":"2","a":"1.1","A":"3"},"stream":"bnbusdt@bookTicker"}`},
		{"whitespace", " " + docTrade + "\n"},
		// Binance sends strings; a bare number's literal text is as exact.
		{"trade price as a JSON number", tradeWith("p", `0.001`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeFrame(t, tc.frame)
			if err != nil || len(f.Trades)+len(f.Quotes) != 1 {
				t.Fatalf("decode = %+v, %v", f, err)
			}
		})
	}
}

func marketBad() []struct{ name, frame, reason string } {
	return []struct{ name, frame, reason string }{
		{"trade: no price", tradeWith("p", ""), wire.ReasonMissingField},
		{"trade: empty price", tradeWith("p", `""`), wire.ReasonBadField},
		{"trade: price not a decimal", tradeWith("p", `"abc"`), wire.ReasonBadField},
		{"trade: no qty", tradeWith("q", ""), wire.ReasonMissingField},
		{"trade: no id", tradeWith("t", ""), wire.ReasonMissingField},
		{"trade: negative id", tradeWith("t", "-1"), wire.ReasonBadField},
		{"trade: no trade time", tradeWith("T", ""), wire.ReasonMissingField},
		{"trade: no side", tradeWith("m", ""), wire.ReasonMissingField},
		{"trade: side a string", tradeWith("m", `"true"`), wire.ReasonBadField},
		{"trade: another symbol", tradeWith("s", `"ETHBTC"`), wire.ReasonSymbolMismatch},
		{"trade: no symbol", tradeWith("s", ""), wire.ReasonMissingField},
		{"trade: another event", tradeWith("e", `"aggTrade"`), reasonUnexpectedEvent},
		{"trade: zero price", tradeWith("p", `"0"`), wire.ReasonInvalid},
		{"trade: duplicate key", strings.Replace(docTrade, `"p":"0.001"`, `"p":"0.001","p":"0.002"`, 1), wire.ReasonBadJSON},
		{"trade: data not an object", `{"stream":"bnbbtc@trade","data":[1]}`, wire.ReasonBadField},
		{"trade: no data", `{"stream":"bnbbtc@trade"}`, wire.ReasonMissingField},
		{"bookTicker: data null", `{"stream":"bnbusdt@bookTicker","data":null}`, wire.ReasonMissingField},
		{"bookTicker: no bid", bookWith("b", ""), wire.ReasonMissingField},
		{"bookTicker: empty ask size", bookWith("A", `""`), wire.ReasonBadField},
		{"bookTicker: no update id", bookWith("u", ""), wire.ReasonMissingField},
		{"bookTicker: another symbol", bookWith("s", `"BTCUSDT"`), wire.ReasonSymbolMismatch},
		{"bookTicker: empty book", bookWith("b", `"0.00000000"`), wire.ReasonInvalid},
		{"trade stream not subscribed", strings.Replace(docTrade, "bnbbtc@trade", "ethbtc@trade", 1), reasonUnknownStream},
		{"a ticker event on a trade stream", strings.Replace(sampleTicker, "bnbbtc@ticker", "bnbbtc@trade", 1), ""},
		{"truncated", docTrade[:len(docTrade)-3], wire.ReasonBadJSON},
	}
}

func TestDecodeMarketRefusesMalformedFrames(t *testing.T) {
	for _, tc := range marketBad() {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeFrame(t, tc.frame)
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if tc.reason != "" && wire.ReasonOf(err) != tc.reason {
				t.Errorf("reason %q (%v), want %q", wire.ReasonOf(err), err, tc.reason)
			}
		})
	}
}

// FuzzDecodeFrames: every frame the connection decoder accepts keeps the
// manager's invariants (wiretest.CheckFrame) and is valid JSON.
func FuzzDecodeFrames(f *testing.F) {
	var bad []string
	for _, b := range marketBad() {
		bad = append(bad, b.frame)
	}
	wiretest.FuzzDecoder(f, marketDecoder(), wireSamples(f), []string{docTrade, docBook, sampleTicker}, bad, wiretest.FuzzChecks{})
}

// BenchmarkDecodeMarket is one trade or bookTicker frame → record, beside
// encoding/json into a map with UseNumber (without it every price would be
// a float64).
func BenchmarkDecodeMarket(b *testing.B) {
	for _, tc := range []struct {
		name   string
		frame  string
		fields []string
	}{
		{"trade", docTrade, []string{"p", "q"}},
		{"bookTicker", docBook, []string{"b", "B", "a", "A"}},
		{"ticker", sampleTicker, []string{"c", "v", "b", "a", "o", "h", "l", "q"}},
	} {
		b.Run(tc.name+"/decoder", func(b *testing.B) {
			wiretest.BenchDecoder(b, marketDecoder(), []byte(tc.frame))
		})
		b.Run(tc.name+"/encoding_json_map", func(b *testing.B) {
			frame := []byte(tc.frame)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			var d tick.Trade
			for b.Loop() {
				var env map[string]any
				dec := json.NewDecoder(strings.NewReader(tc.frame))
				dec.UseNumber()
				if err := dec.Decode(&env); err != nil {
					b.Fatal(err)
				}
				data := env["data"].(map[string]any)
				for _, k := range tc.fields {
					if err := tick.ParseDecimal(&d.Price, data[k].(string)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// tradeFrame and bookFrame build combined-stream events for symbol.
func tradeFrame(symbol string, id int, buyerMaker bool, ts int64) string {
	f := strings.Replace(docTrade, "bnbbtc@", strings.ToLower(symbol)+"@", 1)
	f = withField(f, "s", `"`+symbol+`"`)
	f = withField(f, "t", strconv.Itoa(id))
	f = withField(f, "m", strconv.FormatBool(buyerMaker))
	return withField(f, "T", strconv.FormatInt(ts, 10))
}

func bookFrame(symbol string, u int, bid string) string {
	f := strings.Replace(docBook, "bnbusdt@", strings.ToLower(symbol)+"@", 1)
	f = withField(f, "s", `"`+symbol+`"`)
	f = withField(f, "u", strconv.Itoa(u))
	return withField(f, "b", `"`+bid+`"`)
}

// Against a local Binance: with trades and quotes on, each symbol's three
// streams ride one connection (the shard counts them against
// streams_per_conn), trades arrive with the taker's side, best bid/ask as
// quotes, a trade id jump is a gap, and the ticker goes on as before.
func TestTradesAndQuotesFromALocalServer(t *testing.T) {
	symbols := []string{"BTCUSDT", "ETHUSDT"}
	trades, quotes, gaps := &wstest.Trades{}, &wstest.Quotes{}, &wstest.Gaps{}
	o := Options{Symbols: symbols, Trades: true, Quotes: true, StreamsPerConn: 5, TradeSink: trades, QuoteSink: quotes, Gaps: gaps}
	h := start(t, clock.NewFake(t0), o, func(sc *serverConn) {
		sym := strings.ToUpper(strings.TrimSuffix(streamsOf(sc)[0], "@ticker"))
		frame, _ := ticker(sym, 1, 0)
		sc.Send(frame,
			tradeFrame(sym, 100, true, 1672515782100), bookFrame(sym, 7, "99.10"),
			tradeFrame(sym, 101, false, 1672515782200), tradeFrame(sym, 105, true, 1672515782900),
			bookFrame(sym, 9, "99.20"))
		sc.WaitGone()
	})
	h.out.WaitFor(t, 2)
	testkit.Eventually(t, 5*time.Second, "6 trades and 4 quotes", func() bool { return len(trades.All()) == 6 && len(quotes.All()) == 4 })
	testkit.Eventually(t, 5*time.Second, "2 gaps", func() bool { return len(gaps.All()) == 2 })

	var urls []string
	for _, sc := range h.fb.Conns() {
		urls = append(urls, strings.Join(streamsOf(sc), "/"))
	}
	sort.Strings(urls)
	if want := "[btcusdt@ticker/btcusdt@trade/btcusdt@bookTicker ethusdt@ticker/ethusdt@trade/ethusdt@bookTicker]"; fmt.Sprint(urls) != want {
		t.Errorf("connections carry %v, want %s", urls, want)
	}
	per := map[string][]string{}
	for _, tr := range trades.All() {
		per[tr.Symbol] = append(per[tr.Symbol], tr.TradeID+":"+string(tr.Side))
	}
	for _, q := range quotes.All() {
		per[q.Symbol] = append(per[q.Symbol], "bid "+q.Bid.String())
	}
	for _, sym := range symbols {
		if want := "[100:sell 101:buy 105:sell bid 99.10 bid 99.20]"; fmt.Sprint(per[sym]) != want {
			t.Errorf("%s: %v, want %s", sym, per[sym], want)
		}
	}
	for _, g := range gaps.All() {
		if g.Reason != tick.GapSequence || g.Channel != KindTrade || g.FromSeq != 101 || g.ToSeq != 105 ||
			g.From != 1672515782200 || g.To != 1672515782900 || g.Cause != "t" {
			t.Errorf("gap %+v", g)
		}
	}
	if n := testutil.CollectAndCount(h.m.Malformed); n != 0 {
		t.Errorf("%d malformed series", n)
	}
}

func TestStreamsPerConnCountsTheExtraStreams(t *testing.T) {
	for _, tc := range []struct {
		trades, quotes bool
		perConn        int
		err            string
	}{
		{false, false, 1, ""},
		{true, false, 1, "outside 2..1024"},
		{true, true, 2, "outside 3..1024"},
		{true, true, 3, ""},
	} {
		c := DefaultConfig()
		c.Trades, c.Quotes, c.StreamsPerConn = tc.trades, tc.quotes, tc.perConn
		err := c.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Validate = %v, want %q", tc, err, tc.err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "streams_per_conn: ") {
			t.Errorf("error %q does not start with its key", err)
		}
	}
}
