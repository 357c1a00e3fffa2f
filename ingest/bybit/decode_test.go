package bybit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wire/wiretest"
	"github.com/tickflow/tickflow/tick"
)

// Frames the samples file lacks, from Bybit's v5 documentation
// (https://bybit-exchange.github.io/docs/v5/websocket/public/trade and
// .../public/orderbook; the failed-subscribe and linear pong shapes from
// .../v5/ws/connect).
const (
	docTrade     = `{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":1783284617}]}`
	docBook      = `{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1672304484978,"data":{"s":"BTCUSDT","b":[["16493.50","0.006"]],"a":[["16611.00","0.029"]],"u":18521288,"seq":7961638724},"cts":1672304484976}`
	docSubFailed = `{"success":false,"ret_msg":"Invalid symbol :[tickers.BTCUSDX]","conn_id":"2324d924-aa4d-45b0-a858-7b8be29ab52b","req_id":"7","op":"subscribe"}`
	docPongLin   = `{"req_id":"100001","op":"pong","args":["1661840813425"],"conn_id":"cbm5e2nfpqq0hamh2c10-2"}`
)

func samples(t testing.TB) []wiretest.Sample { return wiretest.Samples(t, "testdata/bybit.jsonl") }

func subscribed() *wire.Topics {
	var tp wire.Topics
	for _, ch := range []string{Tickers, Trades, Book1} {
		tp.Add(ch, "BTCUSDT")
	}
	return &tp
}

func decodeWith(t testing.TB, d *Decoder, frame string) (*wire.Frame, error) {
	t.Helper()
	var f wire.Frame
	err := d.Decode([]byte(frame), 42, &f)
	if err == nil {
		wiretest.CheckFrame(t, []byte(frame), &f)
	}
	return &f, err
}

func decode(t testing.TB, frame string) (*wire.Frame, error) {
	return decodeWith(t, NewDecoder(subscribed(), nil), frame)
}

func tickerSample(t testing.TB) string {
	return string(wiretest.Find(t, samples(t), "tickers.<symbol> spot snapshot"))
}

func TestDocumentedTicker(t *testing.T) {
	f, err := decode(t, tickerSample(t))
	if err != nil || f.Kind != wire.Data || len(f.Ticks) != 1 || len(f.Rejects) != 0 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := tick.Tick{
		Exchange: "bybit", Symbol: "BTCUSDT", Timestamp: 1672305380595,
		Price: tick.MustDecimal("16363.78"), Volume: tick.MustDecimal("5865.470182"),
		Bid: tick.MustDecimal("0"), Ask: tick.MustDecimal("0"), // spot tickers carry none
		Open24h: tick.MustDecimal("16443.66"), High24h: tick.MustDecimal("16566.64"), Low24h: tick.MustDecimal("16009.19"),
		QuoteVolume: tick.MustDecimal("95949815.680875"), ReceivedAt: 42,
	}
	if got := string(f.Ticks[0].AppendJSON(nil)); got != string(want.AppendJSON(nil)) {
		t.Errorf("tick\n %s\nwant\n %s", got, want.AppendJSON(nil))
	}
}

func TestDocumentedTrade(t *testing.T) {
	f, err := decode(t, docTrade)
	if err != nil || len(f.Trades) != 1 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := `{"exchange":"bybit","symbol":"BTCUSDT","base":"BTC","quote":"USDT","timestamp":1672304486865,"price":"16578.50","size":"0.001","side":"buy","trade_id":"20f43950-d8dd-5b31-9112-a178eb6023af","received_at_us":42}`
	if got := string(f.Trades[0].AppendJSON(nil)); got != want {
		t.Errorf("trade\n %s\nwant\n %s", got, want)
	}
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Trades, Symbol: "BTCUSDT", Field: "seq", Value: 1783284617}) {
		t.Errorf("seqs %+v", f.Seqs)
	}
	sell, err := decode(t, strings.Replace(docTrade, `"Buy"`, `"Sell"`, 1))
	if err != nil || len(sell.Trades) != 1 || sell.Trades[0].Side != tick.Sell {
		t.Fatalf("Sell: %+v, %v", sell, err)
	}
}

func TestDocumentedBook(t *testing.T) {
	f, err := decode(t, docBook)
	if err != nil || len(f.Quotes) != 1 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	q := f.Quotes[0]
	if q.Bid.String() != "16493.50" || q.BidSize.String() != "0.006" || q.Ask.String() != "16611.00" || q.AskSize.String() != "0.029" ||
		q.Timestamp != 1672304484978 || q.Base != "BTC" || q.Quote != "USDT" {
		t.Errorf("quote %+v", q)
	}
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Book1, Symbol: "BTCUSDT", Field: "u", Value: 18521288}) {
		t.Errorf("seqs %+v", f.Seqs)
	}
}

func TestBookDeltas(t *testing.T) {
	d := NewDecoder(subscribed(), nil)
	delta := func(b, a string, u int) string {
		return `{"topic":"orderbook.1.BTCUSDT","type":"delta","ts":1672304484980,"data":{"s":"BTCUSDT","b":` + b + `,"a":` + a + `,"u":` + itoa(u) + `,"seq":1}}`
	}
	// A delta before any snapshot knows one side: no quote yet.
	f, err := decodeWith(t, d, delta(`[["100","1"]]`, `[]`, 5))
	if err != nil || len(f.Quotes) != 0 || len(f.Seqs) != 1 {
		t.Fatalf("first delta: %+v, %v", f, err)
	}
	// Now the ask arrives: a full quote.
	f, err = decodeWith(t, d, delta(`[]`, `[["101","2"]]`, 6))
	if err != nil || len(f.Quotes) != 1 || f.Quotes[0].Bid.String() != "100" || f.Quotes[0].Ask.String() != "101" {
		t.Fatalf("second delta: %+v, %v", f, err)
	}
	// The bid side empties: no quote until it is known again.
	f, err = decodeWith(t, d, delta(`[["100","0"]]`, `[]`, 7))
	if err != nil || len(f.Quotes) != 0 {
		t.Fatalf("cleared bid: %+v, %v", f, err)
	}
	// A bad level changes nothing.
	f, _ = decodeWith(t, d, delta(`[["99","x"]]`, `[["105","1"]]`, 8))
	if len(f.Rejects) != 1 {
		t.Fatalf("bad level: %+v", f)
	}
	f, err = decodeWith(t, d, delta(`[["99","3"]]`, `[]`, 9))
	if err != nil || len(f.Quotes) != 1 || f.Quotes[0].Ask.String() != "101" {
		t.Fatalf("after the bad level: %+v, %v", f, err)
	}
	// A snapshot replaces everything; u = 1 marks a restart.
	f, err = decodeWith(t, d, strings.Replace(docBook, `"u":18521288`, `"u":1`, 1))
	if err != nil || len(f.Quotes) != 1 || !f.Seqs[0].Reset {
		t.Fatalf("restart snapshot: %+v, %v", f, err)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestControlFrames(t *testing.T) {
	s := samples(t)
	for _, tc := range []struct {
		name, frame string
		kind        wire.Kind
		ctl         wire.Control
	}{
		{"subscribe ack", string(wiretest.Find(t, s, "subscribe response")), wire.Subscribed, wire.Control{ReqID: "10001", Message: "subscribe"}},
		{"subscribe failed", docSubFailed, wire.SubscribeError, wire.Control{ReqID: "7", Message: "Invalid symbol :[tickers.BTCUSDX]"}},
		{"unsubscribe ack", `{"success":true,"ret_msg":"","conn_id":"x","req_id":"3","op":"unsubscribe"}`, wire.Unsubscribed, wire.Control{ReqID: "3"}},
		{"spot pong", string(wiretest.Find(t, s, "pong response")), wire.Pong, wire.Control{Message: "pong"}},
		{"linear pong", docPongLin, wire.Pong, wire.Control{ReqID: "100001"}},
		{"other failure", `{"success":false,"ret_msg":"error:request not authorized","op":"auth"}`, wire.Error, wire.Control{Message: "error:request not authorized"}},
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
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// setData is the documented ticker push with data's field k set to raw
// JSON v, or removed when v is "".
func setData(t testing.TB, k, v string) string {
	var push map[string]json.RawMessage
	if err := json.Unmarshal([]byte(tickerSample(t)), &push); err != nil {
		t.Fatal(err)
	}
	var data map[string]json.RawMessage
	_ = json.Unmarshal(push["data"], &data)
	if v == "" {
		delete(data, k)
	} else {
		data[k] = json.RawMessage(v)
	}
	push["data"], _ = json.Marshal(data)
	b, _ := json.Marshal(push)
	return string(b)
}

func badFrames(t testing.TB) []struct{ name, frame, reason string } {
	ticker := tickerSample(t)
	return []struct{ name, frame, reason string }{
		{"not JSON", `{"topic":`, wire.ReasonBadJSON},
		{"empty", ``, wire.ReasonBadJSON},
		{"trailing garbage", ticker + `x`, wire.ReasonBadJSON},
		{"huge", `{"x":"` + strings.Repeat("a", wire.MaxFrame) + `"}`, wire.ReasonTooLarge},
		{"empty object", `{}`, wire.ReasonUnexpected},
		{"topic without a symbol", `{"topic":"tickers","data":{}}`, wire.ReasonUnexpected},
		{"not subscribed", strings.ReplaceAll(ticker, "BTCUSDT", "ETHUSDT"), wire.ReasonUnknownStream},
		{"channel not decoded", strings.Replace(ticker, "tickers.BTCUSDT", "kline.1.BTCUSDT", 1), wire.ReasonUnknownStream},
		{"tickers delta", strings.Replace(ticker, `"snapshot"`, `"delta"`, 1), wire.ReasonUnexpected},
		{"no data", `{"topic":"tickers.BTCUSDT","ts":1,"type":"snapshot"}`, wire.ReasonMissingField},
		{"trade data not an array", `{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":{"T":1}}`, wire.ReasonBadField},
		{"success not a bool", `{"success":"yes","op":"subscribe"}`, wire.ReasonBadField},
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
	for _, tc := range []struct{ name, frame, reason string }{
		{"no lastPrice", setData(t, "lastPrice", ""), wire.ReasonMissingField},
		{"empty lastPrice", setData(t, "lastPrice", `""`), wire.ReasonBadField},
		{"lastPrice Infinity", setData(t, "lastPrice", `"Infinity"`), wire.ReasonBadField},
		{"bad optional", setData(t, "turnover24h", `"1e"`), wire.ReasonBadField},
		{"no symbol", setData(t, "symbol", ""), wire.ReasonMissingField},
		{"other symbol", setData(t, "symbol", `"ETHUSDT"`), wire.ReasonSymbolMismatch},
		{"negative price", setData(t, "lastPrice", `"-1"`), wire.ReasonInvalid},
		{"ticker without ts", strings.Replace(tickerSample(t), `"ts":1672305380595,`, ``, 1), wire.ReasonMissingField},
		{"trade side lower-case", strings.Replace(docTrade, `"Buy"`, `"buy"`, 1), wire.ReasonBadField},
		{"trade without id", strings.Replace(docTrade, `"i":"20f43950-d8dd-5b31-9112-a178eb6023af",`, ``, 1), wire.ReasonMissingField},
		{"trade empty size", strings.Replace(docTrade, `"v":"0.001"`, `"v":""`, 1), wire.ReasonBadField},
		{"trade time string", strings.Replace(docTrade, `"T":1672304486865`, `"T":"soon"`, 1), wire.ReasonBadField},
		{"trade other symbol", strings.Replace(docTrade, `"s":"BTCUSDT"`, `"s":"ETHUSDT"`, 1), wire.ReasonSymbolMismatch},
		{"trade zero size", strings.Replace(docTrade, `"v":"0.001"`, `"v":"0"`, 1), wire.ReasonInvalid},
		{"book without u", strings.Replace(docBook, `"u":18521288,`, ``, 1), wire.ReasonMissingField},
		{"book snapshot empty", strings.Replace(strings.Replace(docBook, `[["16493.50","0.006"]]`, `[]`, 1), `[["16611.00","0.029"]]`, `[]`, 1), wire.ReasonMissingField},
		{"book level short", strings.Replace(docBook, `["16493.50","0.006"]`, `["16493.50"]`, 1), wire.ReasonBadField},
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
	t.Run("unknown fields, including one-letter twins", func(t *testing.T) {
		frame := strings.Replace(docTrade, `"BT":false`, `"BT":false,"V":"999","P":"1","RPI":true,"new":{"x":[1]}`, 1)
		f, err := decode(t, frame)
		if err != nil || len(f.Trades) != 1 || f.Trades[0].Size.String() != "0.001" || f.Trades[0].Price.String() != "16578.50" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
		frame = strings.Replace(docBook, `"u":18521288`, `"u":18521288,"B":[["1","1"]],"A":[["2","2"]]`, 1)
		f, err = decode(t, frame)
		if err != nil || len(f.Quotes) != 1 || f.Quotes[0].Bid.String() != "16493.50" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("missing 24h figures are zero", func(t *testing.T) {
		f, err := decode(t, setData(t, "turnover24h", ""))
		if err != nil || len(f.Ticks) != 1 || !f.Ticks[0].QuoteVolume.IsZero() {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("one bad trade keeps the others", func(t *testing.T) {
		frame := strings.Replace(docTrade, `"data":[`, `"data":[{"T":1,"s":"BTCUSDT","S":"Sell","v":"1","p":"","i":"x"},`, 1)
		f, err := decode(t, frame)
		if err != nil || len(f.Trades) != 1 || len(f.Rejects) != 1 || f.Rejects[0].Index != 0 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("numbers sent bare are exact", func(t *testing.T) {
		f, err := decode(t, setData(t, "lastPrice", `16363.780`))
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Price.Text('f') != "16363.780" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
}

func TestBuilders(t *testing.T) {
	b, err := Subscribe("test", Topic(Tickers, "BTCUSDT"), Topic(Tickers, "ETHUSDT"))
	if err != nil {
		t.Fatal(err)
	}
	want := wiretest.Find(t, samples(t), "subscribe request")
	var got, exp any
	_ = json.Unmarshal(b, &got)
	_ = json.Unmarshal(want, &exp)
	if mustJSON(got) != mustJSON(exp) {
		t.Errorf("Subscribe = %s, want %s", b, want)
	}
	if b, _ := Unsubscribe("", Topic(Book1, "BTCUSDT")); string(b) != `{"op":"unsubscribe","args":["orderbook.1.BTCUSDT"]}` {
		t.Errorf("Unsubscribe = %s", b)
	}
	topics := make([]string, 23)
	for i := range topics {
		topics[i] = Topic(Trades, "X"+itoa(i))
	}
	if _, err := Subscribe("", topics...); err == nil {
		t.Error("Subscribe took more than 10 topics")
	}
	batches := Batches(topics)
	if len(batches) != 3 || len(batches[0]) != 10 || len(batches[2]) != 3 {
		t.Errorf("Batches = %v", batches)
	}
	for _, bt := range batches {
		if _, err := Subscribe("", bt...); err != nil {
			t.Error(err)
		}
	}
	if _, err := Subscribe(""); err == nil {
		t.Error("Subscribe with no topics")
	}
	if string(Ping("100001")) != `{"req_id":"100001","op":"ping"}` || string(Ping("")) != `{"op":"ping"}` {
		t.Errorf("Ping = %s", Ping("100001"))
	}
}

func FuzzDecode(f *testing.F) {
	var bad []string
	for _, b := range badFrames(f) {
		bad = append(bad, b.frame)
	}
	wiretest.FuzzDecoder(f, NewDecoder(subscribed(), nil), samples(f),
		[]string{docTrade, docBook, docSubFailed, docPongLin, strings.Replace(docBook, "snapshot", "delta", 1)}, bad, wiretest.FuzzChecks{})
}

// BenchmarkDecode is one frame → records, per channel, beside
// encoding/json into map[string]any with the same fields parsed exactly.
func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct {
		name   string
		frame  []byte
		fields []string
	}{
		{"tickers", []byte(tickerSample(b)), []string{"lastPrice", "highPrice24h", "lowPrice24h", "prevPrice24h", "volume24h", "turnover24h"}},
		{"publicTrade", []byte(docTrade), []string{"p", "v"}},
		{"orderbook.1", []byte(docBook), nil},
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
				var e map[string]any
				switch d := m["data"].(type) {
				case []any:
					e = d[0].(map[string]any)
				case map[string]any:
					e = d
				}
				var x tick.Tick
				for _, k := range tc.fields {
					if err := tick.ParseDecimal(&x.Price, e[k].(string)); err != nil {
						b.Fatal(err)
					}
				}
				if tc.fields == nil {
					for _, side := range []string{"b", "a"} {
						for _, v := range e[side].([]any)[0].([]any)[:2] {
							if err := tick.ParseDecimal(&x.Price, v.(string)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			}
		})
	}
}
