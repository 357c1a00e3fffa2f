package okx

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wire/wiretest"
	"github.com/tickflow/tickflow/tick"
)

// Frames the samples file lacks, from OKX's API v5 documentation
// (https://www.okx.com/docs-v5/en/, "WebSocket Public Channel": Trades
// channel, Order book channel bbo-tbt / books5, and "Notice" for 64008).
const (
	docTrades  = `{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234}]}`
	docBBO     = `{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}`
	docBooks5  = `{"arg":{"channel":"books5","instId":"BTC-USDT"},"data":[{"asks":[["8446","95","0","3"],["8447","1","0","1"]],"bids":[["8445","10","0","1"],["8444","2","0","1"]],"instId":"BTC-USDT","ts":"1597026383085","seqId":123456}]}`
	docNotice  = `{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}`
	docConnCnt = `{"event":"channel-conn-count","channel":"tickers","connCount":"2","connId":"a4d3ae55"}`
	docUnsub   = `{"event":"unsubscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a4d3ae55"}`
)

func samples(t testing.TB) []wiretest.Sample { return wiretest.Samples(t, "testdata/okx.jsonl") }

func subscribed() *wire.Topics {
	var tp wire.Topics
	for _, ch := range []string{Tickers, Trades, BBO, Books5} {
		tp.Add(ch, "BTC-USDT")
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

func TestDocumentedTicker(t *testing.T) {
	f, err := decode(t, string(wiretest.Find(t, samples(t), "v5 tickers push")))
	if err != nil || f.Kind != wire.Data || len(f.Ticks) != 1 || len(f.Rejects) != 0 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := tick.Tick{
		Exchange: "okx", Symbol: "BTC-USDT", Timestamp: 1597026383085,
		Price: tick.MustDecimal("9999.99"), Volume: tick.MustDecimal("2222"),
		Bid: tick.MustDecimal("8888.88"), Ask: tick.MustDecimal("9999.99"),
		Open24h: tick.MustDecimal("9000"), High24h: tick.MustDecimal("10000"), Low24h: tick.MustDecimal("8888.88"),
		QuoteVolume: tick.MustDecimal("2222"), ReceivedAt: 42,
	}
	if got := string(f.Ticks[0].AppendJSON(nil)); got != string(want.AppendJSON(nil)) {
		t.Errorf("tick\n %s\nwant\n %s", got, want.AppendJSON(nil))
	}
}

func TestDocumentedTrade(t *testing.T) {
	f, err := decode(t, docTrades)
	if err != nil || len(f.Trades) != 1 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := `{"exchange":"okx","symbol":"BTC-USDT","base":"BTC","quote":"USDT","timestamp":1630048897897,"price":"42219.9","size":"0.12060306","side":"buy","trade_id":"130639474","received_at_us":42}`
	if got := string(f.Trades[0].AppendJSON(nil)); got != want {
		t.Errorf("trade\n %s\nwant\n %s", got, want)
	}
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: "trades", Symbol: "BTC-USDT", Field: "tradeId", Value: 130639474, Prev: 130639471, Contiguous: true}) {
		t.Errorf("seqs %+v", f.Seqs)
	}
}

func TestDocumentedBooks(t *testing.T) {
	for _, tc := range []struct{ frame, ch, bid, bidSz, ask, askSz string }{
		{docBBO, BBO, "111.05", "57745", "111.06", "55154"},
		{docBooks5, Books5, "8445", "10", "8446", "95"},
	} {
		f, err := decode(t, tc.frame)
		if err != nil || len(f.Quotes) != 1 {
			t.Fatalf("%s: decode = %+v, %v", tc.ch, f, err)
		}
		q := f.Quotes[0]
		if q.Bid.String() != tc.bid || q.BidSize.String() != tc.bidSz || q.Ask.String() != tc.ask || q.AskSize.String() != tc.askSz ||
			q.Base != "BTC" || q.Quote != "USDT" || q.Symbol != "BTC-USDT" || q.ReceivedAt != 42 {
			t.Errorf("%s: quote %+v", tc.ch, q)
		}
		if len(f.Seqs) != 1 || f.Seqs[0].Channel != tc.ch || f.Seqs[0].Field != "seqId" || f.Seqs[0].Contiguous {
			t.Errorf("%s: seqs %+v", tc.ch, f.Seqs)
		}
	}
}

func TestControlFrames(t *testing.T) {
	s := samples(t)
	for _, tc := range []struct {
		name, frame string
		kind        wire.Kind
		ctl         wire.Control
	}{
		{"subscribe ack", string(wiretest.Find(t, s, "v5 subscribe response")), wire.Subscribed, wire.Control{Channel: "tickers", Symbols: []string{"BTC-USDT"}, ReqID: "1512"}},
		{"subscribe error", string(wiretest.Find(t, s, "v5 error response")), wire.SubscribeError, wire.Control{ReqID: "1512", Code: "60012",
			Message: `Invalid request: {"op": "subscribe", "argss":[{ "channel" : "tickers", "instId" : "LTC-USD-200327"}]}`}},
		{"unsubscribe ack", docUnsub, wire.Unsubscribed, wire.Control{Channel: "tickers", Symbols: []string{"BTC-USDT"}}},
		{"notice 64008", docNotice, wire.Notice, wire.Control{Code: NoticeReconnect, Message: "The connection will soon be closed for a service upgrade. Please reconnect."}},
		{"conn count", docConnCnt, wire.Status, wire.Control{Channel: "tickers", Message: "connCount=2"}},
		{"conn count error", `{"event":"channel-conn-count-error","channel":"tickers","connCount":"30","code":"60030","msg":"too many"}`, wire.Error, wire.Control{Channel: "tickers", Code: "60030", Message: "too many"}},
		{"pong", "pong", wire.Pong, wire.Control{}},
		{"pong with newline", "pong\n", wire.Pong, wire.Control{}},
		{"numeric code", `{"event":"error","code":60012,"msg":"x"}`, wire.SubscribeError, wire.Control{Code: "60012", Message: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decode(t, tc.frame)
			if err != nil || f.Kind != tc.kind {
				t.Fatalf("decode = %v, %v; want %v", f.Kind, err, tc.kind)
			}
			if got, _ := json.Marshal(f.Control); string(got) != mustJSON(tc.ctl) {
				t.Errorf("control %s, want %s", got, mustJSON(tc.ctl))
			}
		})
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// setEntry is the documented ticker push with its entry's field k set to
// raw JSON v, or removed when v is "".
func setEntry(t testing.TB, k, v string) string {
	var push struct {
		Arg  json.RawMessage              `json:"arg"`
		Data []map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(wiretest.Find(t, samples(t), "v5 tickers push"), &push); err != nil {
		t.Fatal(err)
	}
	if v == "" {
		delete(push.Data[0], k)
	} else {
		push.Data[0][k] = json.RawMessage(v)
	}
	b, _ := json.Marshal(push)
	return string(b)
}

// badFrames are refused whole, with the reason they count under.
func badFrames(t testing.TB) []struct{ name, frame, reason string } {
	ticker := string(wiretest.Find(t, samples(t), "v5 tickers push"))
	return []struct{ name, frame, reason string }{
		{"not JSON", `hello`, wire.ReasonBadJSON},
		{"empty", ``, wire.ReasonBadJSON},
		{"truncated", ticker[:60], wire.ReasonBadJSON},
		{"trailing garbage", ticker + `}`, wire.ReasonBadJSON},
		{"array", `[1,2]`, wire.ReasonBadField},
		{"huge", `{"x":"` + strings.Repeat("a", wire.MaxFrame) + `"}`, wire.ReasonTooLarge},
		{"empty object", `{}`, wire.ReasonUnexpected},
		{"unknown event", `{"event":"login","code":"0"}`, wire.ReasonUnexpected},
		{"data not an array", `{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":{}}`, wire.ReasonBadField},
		{"arg without data", `{"arg":{"channel":"tickers","instId":"BTC-USDT"}}`, wire.ReasonUnexpected},
		{"instrument not subscribed", strings.ReplaceAll(ticker, "BTC-USDT", "ETH-USDT"), wire.ReasonUnknownStream},
		{"channel not decoded", strings.Replace(docBBO, "bbo-tbt", "candle1m", 1), wire.ReasonUnknownStream},
		{"event type wrong", `{"event":7}`, wire.ReasonBadField},
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

func TestEntriesRefusedOneByOne(t *testing.T) {
	for _, tc := range []struct{ name, frame, reason string }{
		{"no last", setEntry(t, "last", ""), wire.ReasonMissingField},
		{"empty last", setEntry(t, "last", `""`), wire.ReasonBadField},
		{"null last", setEntry(t, "last", `null`), wire.ReasonBadField},
		{"last NaN", setEntry(t, "last", `"NaN"`), wire.ReasonBadField},
		{"last not a number", setEntry(t, "last", `"9,999"`), wire.ReasonBadField},
		{"last an object", setEntry(t, "last", `{}`), wire.ReasonBadField},
		{"no ts", setEntry(t, "ts", ""), wire.ReasonMissingField},
		{"ts not an integer", setEntry(t, "ts", `"1597026383.085"`), wire.ReasonBadField},
		{"ts zero", setEntry(t, "ts", `"0"`), wire.ReasonBadField},
		{"ts in ns", setEntry(t, "ts", `"1597026383085000000"`), wire.ReasonBadField},
		{"zero last", setEntry(t, "last", `"0"`), wire.ReasonInvalid},
		{"bad optional field", setEntry(t, "high24h", `"x"`), wire.ReasonBadField},
		{"other instrument in the entry", setEntry(t, "instId", `"ETH-USDT"`), wire.ReasonSymbolMismatch},
		{"entry not an object", `{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[1]}`, wire.ReasonBadField},
		{"trade side upper-case", strings.Replace(docTrades, `"buy"`, `"BUY"`, 1), wire.ReasonBadField},
		{"trade without side", strings.Replace(docTrades, `"side":"buy",`, ``, 1), wire.ReasonMissingField},
		{"trade without id", strings.Replace(docTrades, `"tradeId":"130639474",`, ``, 1), wire.ReasonMissingField},
		{"trade empty size", strings.Replace(docTrades, `"0.12060306"`, `""`, 1), wire.ReasonBadField},
		{"book with no bids", strings.Replace(docBBO, `[["111.05","57745","0","2"]]`, `[]`, 1), wire.ReasonMissingField},
		{"book level too short", strings.Replace(docBBO, `["111.05","57745","0","2"]`, `["111.05"]`, 1), wire.ReasonBadField},
		{"book without seqId", strings.Replace(docBBO, `,"seqId":363996337`, ``, 1), wire.ReasonMissingField},
		{"crossed zero bid", strings.Replace(docBBO, `"111.05"`, `"0"`, 1), wire.ReasonInvalid},
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
	ticker := string(wiretest.Find(t, samples(t), "v5 tickers push"))
	t.Run("empty book side and missing 24h figures are zero", func(t *testing.T) {
		frame := setEntry(t, "bidPx", `""`)
		f, err := decode(t, frame)
		if err != nil || len(f.Ticks) != 1 || !f.Ticks[0].Bid.IsZero() {
			t.Fatalf("decode = %+v, %v", f, err)
		}
		f, err = decode(t, setEntry(t, "volCcy24h", ""))
		if err != nil || len(f.Ticks) != 1 || !f.Ticks[0].QuoteVolume.IsZero() {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("numbers as JSON numbers, exactly", func(t *testing.T) {
		f, err := decode(t, setEntry(t, "last", `9999.990`))
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Price.Text('f') != "9999.990" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("unknown fields everywhere", func(t *testing.T) {
		frame := strings.Replace(ticker, `{"arg":`, `{"new":[{"x":null}],"arg":`, 1)
		frame = strings.Replace(frame, `"instType":"SPOT"`, `"instType":"SPOT","future":{"a":[1,2]}`, 1)
		if f, err := decode(t, frame); err != nil || len(f.Ticks) != 1 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("one bad entry keeps the good ones", func(t *testing.T) {
		frame := strings.Replace(docTrades, `"data":[`, `"data":[{"instId":"BTC-USDT","tradeId":"1","px":"","sz":"1","side":"sell","ts":"1"},`, 1)
		f, err := decode(t, frame)
		if err != nil || len(f.Trades) != 1 || len(f.Rejects) != 1 || f.Rejects[0].Index != 0 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("data before the subscribe ack", func(t *testing.T) {
		// The decoder is stateless about acks: a push for a topic the
		// connection asked for decodes whether or not its ack came first.
		var tp wire.Topics
		tp.Add(Tickers, "BTC-USDT")
		var f wire.Frame
		if err := NewDecoder(&tp, nil).Decode([]byte(ticker), 1, &f); err != nil || len(f.Ticks) != 1 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("no topics accepts every instrument", func(t *testing.T) {
		var f wire.Frame
		if err := NewDecoder(nil, nil).Decode([]byte(strings.ReplaceAll(ticker, "BTC-USDT", "ETH-USDT")), 1, &f); err != nil || len(f.Ticks) != 1 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("unresolvable instrument keeps the native symbol", func(t *testing.T) {
		var f wire.Frame
		frame := strings.ReplaceAll(docTrades, "BTC-USDT", "BTC-USDT-SWAP")
		if err := NewDecoder(nil, nil).Decode([]byte(frame), 1, &f); err != nil || len(f.Trades) != 1 || f.Trades[0].Base != "" || f.Trades[0].Symbol != "BTC-USDT-SWAP" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
}

func TestBuilders(t *testing.T) {
	b, err := Subscribe("1512", Arg{Tickers, "BTC-USDT"})
	if err != nil {
		t.Fatal(err)
	}
	// The documented request, field for field.
	want := wiretest.Find(t, samples(t), "v5 subscribe request")
	var got, exp any
	_ = json.Unmarshal(b, &got)
	_ = json.Unmarshal(want, &exp)
	if mustJSON(got) != mustJSON(exp) {
		t.Errorf("Subscribe = %s, want %s", b, want)
	}
	b, _ = Unsubscribe("", Arg{Trades, "BTC-USDT"}, Arg{BBO, "ETH-USDT"})
	if string(b) != `{"op":"unsubscribe","args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"bbo-tbt","instId":"ETH-USDT"}]}` {
		t.Errorf("Unsubscribe = %s", b)
	}
	if _, err := Subscribe(""); err == nil {
		t.Error("Subscribe with no args")
	}
	many := make([]Arg, 2000)
	for i := range many {
		many[i] = Arg{Tickers, "SOMETHING-LONG-USDT"}
	}
	if _, err := Subscribe("", many...); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized request: %v", err)
	}
	if string(Ping()) != "ping" {
		t.Error("Ping")
	}
}

func FuzzDecode(f *testing.F) {
	var bad []string
	for _, b := range badFrames(f) {
		bad = append(bad, b.frame)
	}
	wiretest.FuzzDecoder(f, NewDecoder(subscribed(), nil), samples(f),
		[]string{docTrades, docBBO, docBooks5, docNotice, docConnCnt, docUnsub, "pong"}, bad, wiretest.FuzzChecks{
			NotJSON: wire.Pong,
			Refused: func(t *testing.T, err error) {
				if wire.ReasonOf(err) == "" {
					t.Fatal("error without a reason")
				}
			},
		})
}

// BenchmarkDecode is one frame → records, per channel, beside the baseline
// the issue names: encoding/json into map[string]any, then the same
// fields parsed exactly (no validation, no instrument).
func BenchmarkDecode(b *testing.B) {
	ticker := wiretest.Find(b, samples(b), "v5 tickers push")
	for _, tc := range []struct {
		name   string
		frame  []byte
		fields []string
	}{
		{"tickers", ticker, []string{"last", "bidPx", "askPx", "open24h", "high24h", "low24h", "vol24h", "volCcy24h"}},
		{"trades", []byte(docTrades), []string{"px", "sz"}},
		{"bbo-tbt", []byte(docBBO), nil},
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
				e := m["data"].([]any)[0].(map[string]any)
				var t tick.Tick
				for _, k := range tc.fields {
					if err := tick.ParseDecimal(&t.Price, e[k].(string)); err != nil {
						b.Fatal(err)
					}
				}
				if tc.fields == nil {
					for _, side := range []string{"bids", "asks"} {
						l := e[side].([]any)[0].([]any)
						for _, v := range l[:2] {
							if err := tick.ParseDecimal(&t.Price, v.(string)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			}
		})
	}
}
