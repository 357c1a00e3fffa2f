package coinbase

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wire/wiretest"
	"github.com/tickflow/tickflow/tick"
)

// Coinbase Exchange frames (the samples file has Advanced Trade only), from
// https://docs.cdp.coinbase.com/exchange/websocket-feed/channels (ticker,
// match, heartbeat) and .../websocket-feed/overview (subscriptions, error).
const (
	exTicker    = `{"type":"ticker","sequence":37475248783,"product_id":"ETH-USD","price":"1285.22","open_24h":"1310.79","volume_24h":"245532.79269678","low_24h":"1280.52","high_24h":"1313.8","volume_30d":"9788783.60117027","best_bid":"1285.04","best_bid_size":"0.46688654","best_ask":"1285.27","best_ask_size":"1.56637040","side":"buy","time":"2022-10-19T23:28:22.061769Z","trade_id":370843401,"last_size":"11.4396987"}`
	exMatch     = `{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}`
	exHeartbeat = `{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}`
	exSubs      = `{"type":"subscriptions","channels":[{"name":"ticker","product_ids":["ETH-USD","BTC-USD"]},{"name":"matches","product_ids":["BTC-USD"]},{"name":"heartbeat","product_ids":["BTC-USD"]}]}`
	exError     = `{"type":"error","message":"Failed to subscribe","reason":"ETH-USDX is not a valid product"}`
	// Advanced Trade's subscriptions reply, from
	// https://docs.cdp.coinbase.com/advanced-trade/docs/ws-overview.
	atSubs = `{"channel":"subscriptions","client_id":"","timestamp":"2023-02-09T20:32:59.106795863Z","sequence_num":2,"events":[{"subscriptions":{"ticker":["BTC-USD"],"heartbeats":["heartbeats"]}}]}`
)

func samples(t testing.TB) []wiretest.Sample { return wiretest.Samples(t, "testdata/coinbase.jsonl") }

func subscribed() *wire.Topics {
	var tp wire.Topics
	for _, p := range []string{"BTC-USD", "ETH-USD"} {
		tp.Add(Ticker, p)
		tp.Add(Matches, p)
		tp.Add(TickerBatch, p)
	}
	return &tp
}

func decode(t testing.TB, frame string) (*wire.Frame, error) {
	t.Helper()
	var f wire.Frame
	err := NewDecoder(subscribed(), nil).Decode([]byte(frame), 42, &f)
	if err == nil {
		wiretest.CheckFrame(t, []byte(frame), &f)
	}
	return &f, err
}

func TestExchangeTicker(t *testing.T) {
	f, err := decode(t, exTicker)
	if err != nil || f.Kind != wire.Data || len(f.Ticks) != 1 || len(f.Quotes) != 1 || len(f.Rejects) != 0 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := tick.Tick{
		Exchange: "coinbase", Symbol: "ETH-USD", Timestamp: 1666222102061,
		Price: tick.MustDecimal("1285.22"), Volume: tick.MustDecimal("245532.79269678"),
		Bid: tick.MustDecimal("1285.04"), Ask: tick.MustDecimal("1285.27"),
		Open24h: tick.MustDecimal("1310.79"), High24h: tick.MustDecimal("1313.8"), Low24h: tick.MustDecimal("1280.52"), ReceivedAt: 42,
	}
	if got := string(f.Ticks[0].AppendJSON(nil)); got != string(want.AppendJSON(nil)) {
		t.Errorf("tick\n %s\nwant\n %s", got, want.AppendJSON(nil))
	}
	if q := f.Quotes[0]; q.BidSize.String() != "0.46688654" || q.AskSize.String() != "1.56637040" || q.Base != "ETH" || q.Quote != "USD" {
		t.Errorf("quote %+v", q)
	}
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Ticker, Symbol: "ETH-USD", Field: "sequence", Value: 37475248783}) {
		t.Errorf("seqs %+v", f.Seqs)
	}
}

func TestExchangeMatchInvertsTheMakerSide(t *testing.T) {
	for _, tc := range []struct{ maker, taker string }{{"sell", "buy"}, {"buy", "sell"}} {
		frame := strings.Replace(exMatch, `"side":"sell"`, `"side":"`+tc.maker+`"`, 1)
		f, err := decode(t, frame)
		if err != nil || len(f.Trades) != 1 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
		want := `{"exchange":"coinbase","symbol":"BTC-USD","base":"BTC","quote":"USD","timestamp":1415348367028,"price":"400.23","size":"5.23512","side":"` + tc.taker + `","trade_id":"10","received_at_us":42}`
		if got := string(f.Trades[0].AppendJSON(nil)); got != want {
			t.Errorf("maker %s: trade\n %s\nwant\n %s", tc.maker, got, want)
		}
		if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Matches, Symbol: "BTC-USD", Field: "trade_id", Value: 10, Contiguous: true}) {
			t.Errorf("seqs %+v", f.Seqs)
		}
	}
	// The last_match sent on subscribe is the same record.
	f, err := decode(t, strings.Replace(exMatch, `"match"`, `"last_match"`, 1))
	if err != nil || len(f.Trades) != 1 {
		t.Fatalf("last_match: %+v, %v", f, err)
	}
}

func TestAdvancedTradeSamples(t *testing.T) {
	s := samples(t)
	f, err := decode(t, string(wiretest.Find(t, s, "Advanced Trade ticker message")))
	if err != nil || len(f.Ticks) != 1 || len(f.Quotes) != 1 {
		t.Fatalf("ticker: %+v, %v", f, err)
	}
	want := tick.Tick{
		Exchange: "coinbase", Symbol: "BTC-USD", Timestamp: 1675974637167,
		Price: tick.MustDecimal("21932.98"), Volume: tick.MustDecimal("16038.28770938"),
		Bid: tick.MustDecimal("21931.98"), Ask: tick.MustDecimal("21933.98"),
		High24h: tick.MustDecimal("23011.18"), Low24h: tick.MustDecimal("21835.29"), ReceivedAt: 42,
	}
	if got := string(f.Ticks[0].AppendJSON(nil)); got != string(want.AppendJSON(nil)) {
		t.Errorf("tick\n %s\nwant\n %s", got, want.AppendJSON(nil))
	}
	if q := f.Quotes[0]; q.BidSize.String() != "8000.21" || q.AskSize.String() != "8038.07770938" {
		t.Errorf("quote %+v", q)
	}
	f, err = decode(t, string(wiretest.Find(t, s, "Advanced Trade heartbeats message")))
	if err != nil || f.Kind != wire.Heartbeat || len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Heartbeats, Field: "heartbeat_counter", Value: 3049, Contiguous: true}) {
		t.Fatalf("heartbeats: %+v, %v", f, err)
	}
}

func TestControlFrames(t *testing.T) {
	for _, tc := range []struct {
		name, frame string
		kind        wire.Kind
		ctl         wire.Control
	}{
		{"exchange subscriptions", exSubs, wire.Subscribed, wire.Control{Channel: "ticker,matches,heartbeat", Symbols: []string{"BTC-USD", "ETH-USD"}}},
		{"exchange subscribe error", exError, wire.SubscribeError, wire.Control{Message: "Failed to subscribe: ETH-USDX is not a valid product"}},
		{"exchange other error", `{"type":"error","message":"slow consumer"}`, wire.Error, wire.Control{Message: "slow consumer"}},
		{"advanced subscriptions", atSubs, wire.Subscribed, wire.Control{Channel: "heartbeats,ticker", Symbols: []string{"BTC-USD", "heartbeats"}}},
		{"advanced error", `{"type":"error","message":"failure to subscribe"}`, wire.SubscribeError, wire.Control{Message: "failure to subscribe"}},
		{"exchange heartbeat", exHeartbeat, wire.Heartbeat, wire.Control{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decode(t, tc.frame)
			if err != nil || f.Kind != tc.kind {
				t.Fatalf("decode = %v, %v; want %v", f.Kind, err, tc.kind)
			}
			if got, want := mustJSON(f.Control), mustJSON(tc.ctl); got != want {
				t.Errorf("control %s, want %s", got, want)
			}
		})
	}
	// The Exchange heartbeat says where the product's trades stand.
	f, _ := decode(t, exHeartbeat)
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Matches, Symbol: "BTC-USD", Field: "trade_id", Value: 20, Contiguous: true, Latest: true}) {
		t.Errorf("heartbeat seqs %+v", f.Seqs)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func set(t testing.TB, frame, k, v string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(frame), &m); err != nil {
		t.Fatal(err)
	}
	if v == "" {
		delete(m, k)
	} else {
		m[k] = json.RawMessage(v)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func badFrames(t testing.TB) []struct{ name, frame, reason string } {
	at := string(wiretest.Find(t, samples(t), "Advanced Trade ticker message"))
	return []struct{ name, frame, reason string }{
		{"not JSON", `{"type":`, wire.ReasonBadJSON},
		{"empty", ``, wire.ReasonBadJSON},
		{"huge", `{"type":"` + strings.Repeat("a", wire.MaxFrame) + `"}`, wire.ReasonTooLarge},
		{"empty object", `{}`, wire.ReasonUnexpected},
		{"unknown type", `{"type":"l2update","product_id":"BTC-USD"}`, wire.ReasonUnknownStream},
		{"product not subscribed", strings.Replace(exTicker, "ETH-USD", "SOL-USD", 1), wire.ReasonUnknownStream},
		{"ticker without product", set(t, exTicker, "product_id", ""), wire.ReasonMissingField},
		{"advanced channel not decoded", strings.Replace(at, `"channel":"ticker"`, `"channel":"level2"`, 1), wire.ReasonUnknownStream},
		{"advanced market_trades", `{"channel":"market_trades","timestamp":"2023-02-09T20:19:35.39625135Z","events":[]}`, wire.ReasonUnknownStream},
		{"advanced without timestamp", set(t, at, "timestamp", ""), wire.ReasonMissingField},
		{"events not an array", set(t, at, "events", `{}`), wire.ReasonBadField},
		{"channels not an array", set(t, exSubs, "channels", `"x"`), wire.ReasonBadField},
	}
}

func TestRefusedFrames(t *testing.T) {
	for _, tc := range badFrames(t) {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decode(t, tc.frame)
			var m *wire.Malformed
			if !errors.As(err, &m) || m.Reason != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
		})
	}
}

func TestEntriesRefused(t *testing.T) {
	at := string(wiretest.Find(t, samples(t), "Advanced Trade ticker message"))
	for _, tc := range []struct{ name, frame, reason string }{
		{"ticker without time (Coinbase's first ticker)", set(t, exTicker, "time", ""), wire.ReasonMissingField},
		{"ticker bad time", set(t, exTicker, "time", `"2022-10-19 23:28"`), wire.ReasonBadField},
		{"ticker empty price", set(t, exTicker, "price", `""`), wire.ReasonBadField},
		{"ticker bad optional", set(t, exTicker, "low_24h", `"low"`), wire.ReasonBadField},
		{"ticker bad bid size", set(t, exTicker, "best_bid_size", `"-"`), wire.ReasonBadField},
		{"ticker zero price", set(t, exTicker, "price", `"0"`), wire.ReasonInvalid},
		{"match without side", set(t, exMatch, "side", ""), wire.ReasonMissingField},
		{"match odd side", set(t, exMatch, "side", `"SELL"`), wire.ReasonBadField},
		{"match without trade_id", set(t, exMatch, "trade_id", ""), wire.ReasonMissingField},
		{"match trade_id a string", set(t, exMatch, "trade_id", `"x10"`), wire.ReasonBadField},
		{"match empty size", set(t, exMatch, "size", `""`), wire.ReasonBadField},
		{"advanced ticker empty price", strings.Replace(at, `"price":"21932.98"`, `"price":""`, 1), wire.ReasonBadField},
		{"advanced ticker for another product", strings.Replace(at, `"product_id":"BTC-USD"`, `"product_id":"DOGE-USD"`, 1), wire.ReasonUnknownStream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decode(t, tc.frame)
			if err != nil || f.Kind != wire.Data {
				t.Fatalf("decode = %v, %v; want a data frame with a reject", f.Kind, err)
			}
			if len(f.Rejects) != 1 || f.Rejects[0].Reason != tc.reason || len(f.Ticks)+len(f.Trades)+len(f.Quotes) != 0 {
				t.Fatalf("rejects %+v, want one %s", f.Rejects, tc.reason)
			}
		})
	}
}

func TestToleratesWhatRealFeedsDo(t *testing.T) {
	t.Run("unknown fields", func(t *testing.T) {
		f, err := decode(t, set(t, exTicker, "new_field", `{"a":[1,2,{"b":null}]}`))
		if err != nil || len(f.Ticks) != 1 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
		f, err = decode(t, set(t, exMatch, "Price", `"1"`))
		if err != nil || len(f.Trades) != 1 || f.Trades[0].Price.String() != "400.23" {
			t.Fatalf("case twin: %+v, %v", f, err)
		}
	})
	t.Run("ticker without best bid/ask sizes gives a tick, no quote", func(t *testing.T) {
		f, err := decode(t, set(t, exTicker, "best_ask_size", ""))
		if err != nil || len(f.Ticks) != 1 || len(f.Quotes) != 0 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("ticker_batch has no bid/ask", func(t *testing.T) {
		at := string(wiretest.Find(t, samples(t), "Advanced Trade ticker message"))
		frame := strings.Replace(at, `"channel":"ticker"`, `"channel":"ticker_batch"`, 1)
		for _, k := range []string{`,"best_bid":"21931.98"`, `,"best_bid_quantity":"8000.21"`, `,"best_ask":"21933.98"`, `,"best_ask_quantity":"8038.07770938"`} {
			frame = strings.Replace(frame, k, "", 1)
		}
		f, err := decode(t, frame)
		if err != nil || len(f.Ticks) != 1 || len(f.Quotes) != 0 || !f.Ticks[0].Bid.IsZero() {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
}

func TestBuilders(t *testing.T) {
	b, err := Subscribe([]string{"ETH-USD", "BTC-USD"}, Ticker, Matches, Heartbeat)
	if err != nil || string(b) != `{"type":"subscribe","product_ids":["ETH-USD","BTC-USD"],"channels":["ticker","matches","heartbeat"]}` {
		t.Errorf("Subscribe = %s, %v", b, err)
	}
	if b, _ := Unsubscribe([]string{"ETH-USD"}, Matches); string(b) != `{"type":"unsubscribe","product_ids":["ETH-USD"],"channels":["matches"]}` {
		t.Errorf("Unsubscribe = %s", b)
	}
	if _, err := Subscribe(nil, Ticker); err == nil {
		t.Error("Subscribe without products")
	}
	s := samples(t)
	for _, tc := range []struct {
		got  func() ([]byte, error)
		want []byte
	}{
		{func() ([]byte, error) { return SubscribeAdvanced(Ticker, []string{"ETH-USD", "BTC-USD"}, "XYZ") }, wiretest.Find(t, s, "Advanced Trade subscribe request")},
		{func() ([]byte, error) { return SubscribeAdvanced(Heartbeats, nil, "XYZ") }, wiretest.Find(t, s, "Advanced Trade heartbeats subscribe")},
	} {
		got, err := tc.got()
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(tc.want, &b)
		if err != nil || mustJSON(a) != mustJSON(b) {
			t.Errorf("got %s, %v; want %s", got, err, tc.want)
		}
	}
	if b, _ := UnsubscribeAdvanced(Ticker, []string{"BTC-USD"}, ""); string(b) != `{"type":"unsubscribe","product_ids":["BTC-USD"],"channel":"ticker"}` {
		t.Errorf("UnsubscribeAdvanced = %s", b)
	}
	if _, err := SubscribeAdvanced(Ticker, nil, ""); err == nil {
		t.Error("SubscribeAdvanced(ticker) without products")
	}
}

func FuzzDecode(f *testing.F) {
	var bad []string
	for _, b := range badFrames(f) {
		bad = append(bad, b.frame)
	}
	wiretest.FuzzDecoder(f, NewDecoder(subscribed(), nil), samples(f),
		[]string{exTicker, exMatch, exHeartbeat, exSubs, exError, atSubs}, bad, wiretest.FuzzChecks{
			Accepted: func(t *testing.T, fr *wire.Frame) {
				for _, tr := range fr.Trades {
					if tr.Side != tick.Buy && tr.Side != tick.Sell {
						t.Fatalf("side %q", tr.Side)
					}
				}
			},
		})
}

// BenchmarkDecode is one frame → records beside encoding/json into
// map[string]any with the same fields parsed exactly.
func BenchmarkDecode(b *testing.B) {
	at := wiretest.Find(b, samples(b), "Advanced Trade ticker message")
	for _, tc := range []struct {
		name   string
		frame  []byte
		fields []string
	}{
		{"exchange_ticker", []byte(exTicker), []string{"price", "open_24h", "volume_24h", "low_24h", "high_24h", "best_bid", "best_bid_size", "best_ask", "best_ask_size"}},
		{"exchange_match", []byte(exMatch), []string{"price", "size"}},
		{"advanced_ticker", at, []string{"price", "volume_24_h", "low_24_h", "high_24_h", "best_bid", "best_bid_quantity", "best_ask", "best_ask_quantity"}},
	} {
		b.Run(tc.name+"/decoder", func(b *testing.B) {
			wiretest.BenchDecoder(b, NewDecoder(subscribed(), nil), tc.frame)
		})
		b.Run(tc.name+"/encoding_json_map", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.frame)))
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(tc.frame, &m); err != nil {
					b.Fatal(err)
				}
				e := m
				if ev, ok := m["events"].([]any); ok {
					e = ev[0].(map[string]any)["tickers"].([]any)[0].(map[string]any)
				}
				var x tick.Tick
				for _, k := range tc.fields {
					if err := tick.ParseDecimal(&x.Price, e[k].(string)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
