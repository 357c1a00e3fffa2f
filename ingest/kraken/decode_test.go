package kraken

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wire/wiretest"
	"github.com/tickflow/tickflow/tick"
)

// Frames the samples file lacks, from Kraken's Spot WebSocket v2
// documentation (https://docs.kraken.com/api/docs/websocket-v2/trade,
// .../ticker (subscribe ack), .../status, and the error response shape of
// "Spot WebSocket v2: Errors").
const (
	docTrade     = `{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"sell","price":0.5117,"qty":40.0,"ord_type":"market","trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}`
	docSubAck    = `{"method":"subscribe","result":{"channel":"ticker","snapshot":true,"symbol":"ALGO/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}`
	docSubErr    = `{"error":"Currency pair not supported ALGO/USDX","method":"subscribe","success":false,"symbol":"ALGO/USDX","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}`
	docStatus    = `{"channel":"status","data":[{"api_version":"v2","connection_id":13834774380200032777,"system":"online","version":"2.0.0"}],"type":"update"}`
	docUnsubAck  = `{"method":"unsubscribe","result":{"channel":"ticker","symbol":"ALGO/USD"},"success":true,"time_in":"2023-09-25T09:05:00.1Z","time_out":"2023-09-25T09:05:00.2Z"}`
	docBadMethod = `{"error":"Unsupported method","method":"frobnicate","success":false,"time_in":"2023-09-25T09:05:00.1Z","time_out":"2023-09-25T09:05:00.2Z"}`
)

func samples(t testing.TB) []wiretest.Sample { return wiretest.Samples(t, "testdata/kraken.jsonl") }

func tickerSample(t testing.TB) string {
	return string(wiretest.Find(t, samples(t), "v2 ticker snapshot"))
}

func subscribed() *wire.Topics {
	var tp wire.Topics
	tp.Add(Ticker, "ALGO/USD")
	tp.Add(Trade, "MATIC/USD")
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
	f, err := decode(t, tickerSample(t))
	if err != nil || f.Kind != wire.Data || len(f.Ticks) != 1 || len(f.Quotes) != 1 || len(f.Rejects) != 0 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	// Every JSON number keeps its literal digits: 740.0 is not 740.
	want := tick.Tick{
		Exchange: "kraken", Symbol: "ALGO/USD", Timestamp: 1695632671742,
		Price: tick.MustDecimal("0.10035"), Volume: tick.MustDecimal("997038.98383185"),
		Bid: tick.MustDecimal("0.10025"), Ask: tick.MustDecimal("0.10036"),
		Open24h: tick.MustDecimal("0.10052"), // last − change = 0.10035 − (−0.00017)
		High24h: tick.MustDecimal("0.10285"), Low24h: tick.MustDecimal("0.09979"), ReceivedAt: 42,
	}
	if got := string(f.Ticks[0].AppendJSON(nil)); got != string(want.AppendJSON(nil)) {
		t.Errorf("tick\n %s\nwant\n %s", got, want.AppendJSON(nil))
	}
	q := f.Quotes[0]
	if q.Bid.Text('f') != "0.10025" || q.BidSize.Text('f') != "740.0" || q.Ask.Text('f') != "0.10036" || q.AskSize.Text('f') != "1361.44813783" ||
		q.Base != "ALGO" || q.Quote != "USD" || q.Timestamp != 1695632671742 {
		t.Errorf("quote %+v", q)
	}
}

func TestDocumentedTrade(t *testing.T) {
	f, err := decode(t, docTrade)
	if err != nil || len(f.Trades) != 1 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	want := `{"exchange":"kraken","symbol":"MATIC/USD","base":"MATIC","quote":"USD","timestamp":1695628177708,"price":"0.5117","size":"40.0","side":"sell","trade_id":"4665906","received_at_us":42}`
	if got := string(f.Trades[0].AppendJSON(nil)); got != want {
		t.Errorf("trade\n %s\nwant\n %s", got, want)
	}
	if len(f.Seqs) != 1 || f.Seqs[0] != (wire.Seq{Channel: Trade, Symbol: "MATIC/USD", Field: "trade_id", Value: 4665906, Contiguous: true}) {
		t.Errorf("seqs %+v", f.Seqs)
	}
}

func TestLegacySymbolsNormalize(t *testing.T) {
	var f wire.Frame
	frame := strings.ReplaceAll(docTrade, "MATIC/USD", "XBT/USD")
	if err := NewDecoder(nil, nil).Decode([]byte(frame), 1, &f); err != nil || len(f.Trades) != 1 {
		t.Fatalf("decode = %+v, %v", f, err)
	}
	if tr := f.Trades[0]; tr.Symbol != "XBT/USD" || tr.Base != "BTC" || tr.Quote != "USD" {
		t.Errorf("trade %s", tr.AppendJSON(nil))
	}
}

func TestControlFrames(t *testing.T) {
	s := samples(t)
	for _, tc := range []struct {
		name, frame string
		kind        wire.Kind
		ctl         wire.Control
	}{
		{"heartbeat", string(wiretest.Find(t, s, "v2 heartbeat")), wire.Heartbeat, wire.Control{}},
		{"pong", string(wiretest.Find(t, s, "v2 pong")), wire.Pong, wire.Control{ReqID: "42"}},
		{"subscribe ack", docSubAck, wire.Subscribed, wire.Control{Channel: "ticker", Symbols: []string{"ALGO/USD"}}},
		{"subscribe error", docSubErr, wire.SubscribeError, wire.Control{Symbols: []string{"ALGO/USDX"}, Message: "Currency pair not supported ALGO/USDX"}},
		{"unsubscribe ack", docUnsubAck, wire.Unsubscribed, wire.Control{Channel: "ticker", Symbols: []string{"ALGO/USD"}}},
		{"other error", docBadMethod, wire.Error, wire.Control{Message: "Unsupported method"}},
		{"status online", docStatus, wire.Status, wire.Control{Channel: "status", Message: "system=online api_version=v2 version=2.0.0"}},
		{"status maintenance", strings.Replace(docStatus, "online", "maintenance", 1), wire.Notice, wire.Control{Channel: "status", Code: "maintenance", Message: "system=maintenance api_version=v2 version=2.0.0"}},
		{"status without data", `{"channel":"status","type":"update"}`, wire.Status, wire.Control{}},
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

// setEntry is the documented ticker with its entry's field k set to raw
// JSON v, or removed when v is "".
func setEntry(t testing.TB, k, v string) string {
	var m struct {
		Channel string                       `json:"channel"`
		Type    string                       `json:"type"`
		Data    []map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(tickerSample(t)), &m); err != nil {
		t.Fatal(err)
	}
	if v == "" {
		delete(m.Data[0], k)
	} else {
		m.Data[0][k] = json.RawMessage(v)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func badFrames(t testing.TB) []struct{ name, frame, reason string } {
	return []struct{ name, frame, reason string }{
		{"not JSON", `{"channel":"ticker"`, wire.ReasonBadJSON},
		{"empty", ``, wire.ReasonBadJSON},
		{"huge", `{"channel":"` + strings.Repeat("a", wire.MaxFrame) + `"}`, wire.ReasonTooLarge},
		{"empty object", `{}`, wire.ReasonUnexpected},
		{"unknown method", `{"method":"frobnicate"}`, wire.ReasonUnexpected},
		{"channel not decoded", `{"channel":"book","type":"snapshot","data":[]}`, wire.ReasonUnknownStream},
		{"no data", `{"channel":"ticker","type":"update"}`, wire.ReasonMissingField},
		{"data not an array", `{"channel":"ticker","type":"update","data":{}}`, wire.ReasonBadField},
		{"number where a string belongs", `{"channel":7}`, wire.ReasonBadField},
		{"bad status entry", `{"channel":"status","data":[{"system":1}]}`, wire.ReasonBadField},
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
		{"no last", setEntry(t, "last", ""), wire.ReasonMissingField},
		{"last as empty string", setEntry(t, "last", `""`), wire.ReasonBadField},
		{"last null", setEntry(t, "last", `null`), wire.ReasonBadField},
		{"last as an array", setEntry(t, "last", `[1]`), wire.ReasonBadField},
		{"no timestamp", setEntry(t, "timestamp", ""), wire.ReasonMissingField},
		{"bad timestamp", setEntry(t, "timestamp", `"yesterday"`), wire.ReasonBadField},
		{"bad optional", setEntry(t, "high", `"1.2.3"`), wire.ReasonBadField},
		{"no symbol", setEntry(t, "symbol", ""), wire.ReasonMissingField},
		{"symbol not subscribed", setEntry(t, "symbol", `"ETH/USD"`), wire.ReasonUnknownStream},
		{"zero last", setEntry(t, "last", `0`), wire.ReasonInvalid},
		{"trade side missing", strings.Replace(docTrade, `"side":"sell",`, ``, 1), wire.ReasonMissingField},
		{"trade side odd", strings.Replace(docTrade, `"sell"`, `"s"`, 1), wire.ReasonBadField},
		{"trade id fractional", strings.Replace(docTrade, `4665906`, `4665906.5`, 1), wire.ReasonBadField},
		{"trade id missing", strings.Replace(docTrade, `"trade_id":4665906,`, ``, 1), wire.ReasonMissingField},
		{"trade qty empty", strings.Replace(docTrade, `40.0`, `""`, 1), wire.ReasonBadField},
		{"trade negative price", strings.Replace(docTrade, `0.5117`, `-0.5117`, 1), wire.ReasonInvalid},
		{"entry not an object", `{"channel":"trade","type":"update","data":["x"]}`, wire.ReasonBadField},
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
	t.Run("exponents and long literals stay exact", func(t *testing.T) {
		f, err := decode(t, setEntry(t, "last", `1.0035e-1`))
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Price.Cmp(new(tick.Tick).Price.SetFinite(10035, -5)) != 0 {
			t.Fatalf("decode = %+v, %v", f, err)
		}
		f, err = decode(t, setEntry(t, "volume", `123456789012345678901234.123456789`))
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Volume.Text('f') != "123456789012345678901234.123456789" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("numbers sent as strings", func(t *testing.T) {
		f, err := decode(t, setEntry(t, "last", `"0.10035"`))
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Price.String() != "0.10035" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("missing optional fields", func(t *testing.T) {
		f, err := decode(t, setEntry(t, "bid_qty", ""))
		if err != nil || len(f.Ticks) != 1 || len(f.Quotes) != 0 {
			t.Fatalf("no bid_qty: %+v, %v", f, err)
		}
		f, err = decode(t, setEntry(t, "change", ""))
		if err != nil || len(f.Ticks) != 1 || !f.Ticks[0].Open24h.IsZero() {
			t.Fatalf("no change: %+v, %v", f, err)
		}
	})
	t.Run("unknown fields", func(t *testing.T) {
		frame := strings.Replace(tickerSample(t), `"vwap":0.10148`, `"vwap":0.10148,"new":{"nested":[1,null,true]},"Last":5`, 1)
		f, err := decode(t, frame)
		// "Last" is not "last": keys match exactly, so an unknown field
		// that differs only in case cannot overwrite a known one.
		if err != nil || len(f.Ticks) != 1 || f.Ticks[0].Price.String() != "0.10035" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
	t.Run("duplicate keys are refused", func(t *testing.T) {
		frame := strings.Replace(tickerSample(t), `"vwap":0.10148`, `"vwap":0.10148,"last":5`, 1)
		if _, err := decode(t, frame); wire.ReasonOf(err) != wire.ReasonBadJSON {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("several symbols, one unsubscribed", func(t *testing.T) {
		frame := strings.Replace(docTrade, `"data":[`, `"data":[{"symbol":"DOGE/USD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"},`, 1)
		f, err := decode(t, frame)
		if err != nil || len(f.Trades) != 1 || len(f.Rejects) != 1 || f.Rejects[0].Symbol != "DOGE/USD" {
			t.Fatalf("decode = %+v, %v", f, err)
		}
	})
}

func TestBuilders(t *testing.T) {
	s := samples(t)
	for _, tc := range []struct {
		name string
		got  func() ([]byte, error)
		want []byte
	}{
		{"subscribe", func() ([]byte, error) { return Subscribe(Params{Channel: Ticker, Symbols: []string{"ALGO/USD"}}, 0) }, wiretest.Find(t, s, "v2 ticker subscribe")},
		{"unsubscribe", func() ([]byte, error) { return Unsubscribe(Params{Channel: Ticker, Symbols: []string{"ALGO/USD"}}, 0) }, wiretest.Find(t, s, "v2 unsubscribe")},
		{"ping", func() ([]byte, error) { return Ping(101), nil }, wiretest.Find(t, s, "v2 application ping")},
	} {
		got, err := tc.got()
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(tc.want, &b)
		if mustJSON(a) != mustJSON(b) {
			t.Errorf("%s = %s, want %s", tc.name, got, tc.want)
		}
	}
	no := false
	b, _ := Subscribe(Params{Channel: Ticker, Symbols: []string{"BTC/USD"}, Snapshot: &no, EventTrigger: "bbo"}, 7)
	if string(b) != `{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD"],"snapshot":false,"event_trigger":"bbo"},"req_id":7}` {
		t.Errorf("Subscribe = %s", b)
	}
	if _, err := Subscribe(Params{Channel: Ticker}, 0); err == nil {
		t.Error("Subscribe without symbols")
	}
}

func FuzzDecode(f *testing.F) {
	var bad []string
	for _, b := range badFrames(f) {
		bad = append(bad, b.frame)
	}
	wiretest.FuzzDecoder(f, NewDecoder(subscribed(), nil), samples(f),
		[]string{docTrade, docSubAck, docSubErr, docStatus, docUnsubAck, docBadMethod}, bad, wiretest.FuzzChecks{})
}

// BenchmarkDecode is one frame → records, beside encoding/json into
// map[string]any. The baseline uses UseNumber: without it every price
// would be a float64, which is the thing this decoder exists to avoid.
func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct {
		name   string
		frame  []byte
		fields []string
	}{
		{"ticker", []byte(tickerSample(b)), []string{"bid", "bid_qty", "ask", "ask_qty", "last", "volume", "low", "high", "change"}},
		{"trade", []byte(docTrade), []string{"price", "qty"}},
	} {
		b.Run(tc.name+"/decoder", func(b *testing.B) {
			wiretest.BenchDecoder(b, NewDecoder(subscribed(), nil), tc.frame)
		})
		b.Run(tc.name+"/encoding_json_v1_struct", func(b *testing.B) {
			// The other exact way the issue suggests: stdlib encoding/json
			// into typed structs with json.Number fields (what UseNumber
			// does for maps). The decoder uses encoding/json/v2's
			// experiment instead; this is the comparison that decided it,
			// with v1's case-insensitive keys as the other reason.
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.frame)))
			for b.Loop() {
				var m struct {
					Channel string `json:"channel"`
					Type    string `json:"type"`
					Data    []struct {
						Symbol    string      `json:"symbol"`
						Bid       json.Number `json:"bid"`
						BidQty    json.Number `json:"bid_qty"`
						Ask       json.Number `json:"ask"`
						AskQty    json.Number `json:"ask_qty"`
						Last      json.Number `json:"last"`
						Volume    json.Number `json:"volume"`
						Low       json.Number `json:"low"`
						High      json.Number `json:"high"`
						Change    json.Number `json:"change"`
						Price     json.Number `json:"price"`
						Qty       json.Number `json:"qty"`
						TradeID   json.Number `json:"trade_id"`
						Side      string      `json:"side"`
						Timestamp string      `json:"timestamp"`
					} `json:"data"`
				}
				if err := json.Unmarshal(tc.frame, &m); err != nil {
					b.Fatal(err)
				}
				e := m.Data[0]
				var x tick.Tick
				for _, n := range []json.Number{e.Bid, e.BidQty, e.Ask, e.AskQty, e.Last, e.Volume, e.Low, e.High, e.Change, e.Price, e.Qty} {
					if n == "" {
						continue
					}
					if err := tick.ParseDecimal(&x.Price, string(n)); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
		b.Run(tc.name+"/encoding_json_map", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.frame)))
			for b.Loop() {
				dec := json.NewDecoder(bytes.NewReader(tc.frame))
				dec.UseNumber()
				var m map[string]any
				if err := dec.Decode(&m); err != nil {
					b.Fatal(err)
				}
				e := m["data"].([]any)[0].(map[string]any)
				var x tick.Tick
				for _, k := range tc.fields {
					if err := tick.ParseDecimal(&x.Price, string(e[k].(json.Number))); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
