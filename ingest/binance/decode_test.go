package binance

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/tick"
)

// samples are the messages of testdata/binance-spot.jsonl (a copy of
// shared/exchange-samples: Binance's documented examples), by "what".
func samples(t testing.TB) map[string]json.RawMessage {
	t.Helper()
	f, err := os.Open("testdata/binance-spot.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]json.RawMessage{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			What    string          `json:"what"`
			Message json.RawMessage `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		out[line.What] = line.Message
	}
	return out
}

// sample returns the sample whose "what" starts with prefix.
func sample(t testing.TB, prefix string) []byte {
	t.Helper()
	for what, m := range samples(t) {
		if strings.HasPrefix(what, prefix) {
			return m
		}
	}
	t.Fatalf("no sample %q", prefix)
	return nil
}

func testDecoder(symbols ...string) *decoder {
	d := &decoder{streams: map[string]*stream{}}
	for _, s := range symbols {
		d.streams[strings.ToLower(s)+"@ticker"] = &stream{symbol: s}
	}
	return d
}

// tickJSON is the tick's wire form: equal JSON means equal ticks, decimal
// places included ("25.35190000" differs from "25.3519").
func tickJSON(t *tick.Tick) string { return string(t.AppendJSON(nil)) }

const sampleTicker = `{"stream":"bnbbtc@ticker","data":{"e":"24hrTicker","E":1672515782136,"s":"BNBBTC","p":"0.0015","P":"250.00","w":"0.0018","x":"0.0009","c":"0.0025","Q":"10","b":"0.0024","B":"10","a":"0.0026","A":"100","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}}`

func TestDecodeDocumentedTicker(t *testing.T) {
	frame := sample(t, "24hrTicker event")
	if string(frame) != sampleTicker {
		t.Fatalf("testdata sample changed; update sampleTicker:\n%s", frame)
	}
	var got tick.Tick
	kind, st, _, err := testDecoder("BNBBTC").decode(frame, &got)
	if err != nil || kind != frameTicker || st.symbol != "BNBBTC" {
		t.Fatalf("decode = %v, %v, %v", kind, st, err)
	}
	want := tick.Tick{
		Exchange: "binance", Symbol: "BNBBTC", Timestamp: 1672515782136,
		Price: tick.MustDecimal("0.0025"), Volume: tick.MustDecimal("10000"),
		Bid: tick.MustDecimal("0.0024"), Ask: tick.MustDecimal("0.0026"),
		Open24h: tick.MustDecimal("0.0010"), High24h: tick.MustDecimal("0.0025"),
		Low24h: tick.MustDecimal("0.0010"), QuoteVolume: tick.MustDecimal("18"),
	}
	if tickJSON(&got) != tickJSON(&want) {
		t.Errorf("decoded\n %s\nwant\n %s", tickJSON(&got), tickJSON(&want))
	}
}

func TestDecodeToleratesWhatRealFeedsDo(t *testing.T) {
	for _, tc := range []struct{ name, frame string }{
		{"data before stream", `{"data":{"e":"24hrTicker","E":5,"s":"BNBBTC","c":"1.50","v":"2","b":"1.4","a":"1.6","o":"1","h":"2","l":"1","q":"3"},"stream":"bnbbtc@ticker"}`},
		{"unknown fields of every type", `{"stream":"bnbbtc@ticker","x":[1,{"y":null},"z"],"data":{"e":"24hrTicker","E":5,"s":"BNBBTC","c":"1.50","v":"2","b":"1.4","a":"1.6","o":"1","h":"2","l":"1","q":"3","new":{"deep":[true,false,-1.5e+3]},"n":18151,"x":"0.0009"}}`},
		{"whitespace", " {\n\"stream\" : \"bnbbtc@ticker\" ,\t\"data\":{ \"e\":\"24hrTicker\",\"E\":5,\"s\":\"BNBBTC\",\"c\":\"1.50\",\"v\":\"2\",\"b\":\"1.4\",\"a\":\"1.6\",\"o\":\"1\",\"h\":\"2\",\"l\":\"1\",\"q\":\"3\" } }\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got tick.Tick
			if _, _, _, err := testDecoder("BNBBTC").decode([]byte(tc.frame), &got); err != nil {
				t.Fatal(err)
			}
			if got.Price.String() != "1.50" || got.Timestamp != 5 || got.Symbol != "BNBBTC" {
				t.Errorf("decoded %s", tickJSON(&got))
			}
		})
	}
}

// withData is the sample ticker with its data object's field k replaced by
// raw JSON v (or removed when v is "").
func withData(k, v string) string {
	var m map[string]json.RawMessage
	var outer struct {
		Stream string          `json:"stream"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(sampleTicker), &outer); err != nil {
		panic(err)
	}
	if err := json.Unmarshal(outer.Data, &m); err != nil {
		panic(err)
	}
	if v == "" {
		delete(m, k)
	} else {
		m[k] = json.RawMessage(v)
	}
	data, _ := json.Marshal(m)
	b, _ := json.Marshal(map[string]json.RawMessage{"stream": json.RawMessage(`"` + outer.Stream + `"`), "data": data})
	return string(b)
}

// badFrames are frames a source must skip, with the reason it counts.
func badFrames(t testing.TB) []struct{ name, frame, reason string } {
	s := samples(t)
	pick := func(prefix string) string {
		for what, m := range s {
			if strings.HasPrefix(what, prefix) {
				return string(m)
			}
		}
		t.Fatalf("no sample %q", prefix)
		return ""
	}
	return []struct{ name, frame, reason string }{
		{"not JSON", `hello`, reasonBadJSON},
		{"truncated", sampleTicker[:80], reasonBadJSON},
		{"trailing garbage", sampleTicker + `x`, reasonBadJSON},
		{"array", `[1,2]`, reasonBadJSON},
		{"empty", ``, reasonBadJSON},
		{"bad literal", `{"stream":"bnbbtc@ticker","data":nul}`, reasonBadJSON},
		{"bad number", `{"stream":"bnbbtc@ticker","n":1-2,"data":{}}`, reasonBadJSON},
		{"missing colon", `{"stream" "bnbbtc@ticker"}`, reasonBadJSON},
		{"control char in string", "{\"stream\":\"bnb\x01\"}", reasonBadJSON},
		{"empty object", `{}`, reasonUnexpected},
		{"raw stream event without wrapper", `{"e":"24hrTicker","E":1,"s":"BNBBTC"}`, reasonUnexpected},
		{"subscribe response", pick("subscribe response"), reasonResponse},
		{"list-subscriptions response", pick("list-subscriptions response"), reasonResponse},
		{"miniTicker stream", pick("24hrMiniTicker"), reasonUnknownStream},
		{"bookTicker stream", pick("bookTicker"), reasonUnknownStream},
		{"trade stream", pick("trade event"), reasonUnknownStream},
		{"kline stream", pick("kline event"), reasonUnknownStream},
		{"ticker for a symbol not subscribed", strings.Replace(sampleTicker, "bnbbtc@ticker", "dogeusdt@ticker", 1), reasonUnknownStream},
		{"non-ticker event on the ticker stream", withData("e", `"24hrMiniTicker"`), reasonUnexpectedEvent},
		{"no event type", withData("e", ""), reasonMissingField},
		{"no price", withData("c", ""), reasonMissingField},
		{"no event time", withData("E", ""), reasonMissingField},
		{"no symbol", withData("s", ""), reasonMissingField},
		{"no quote volume", withData("q", ""), reasonMissingField},
		{"empty price", withData("c", `""`), reasonBadField},
		{"empty bid", withData("b", `""`), reasonBadField},
		{"price as number", withData("c", `0.0025`), reasonBadField},
		{"price null", withData("c", `null`), reasonBadField},
		{"price not a number", withData("c", `"abc"`), reasonBadField},
		{"price NaN", withData("c", `"NaN"`), reasonBadField},
		{"price Infinity", withData("c", `"Infinity"`), reasonBadField},
		{"escaped price", withData("c", `"0.002\u0035"`), reasonBadField},
		{"event time as string", withData("E", `"1672515782136"`), reasonBadField},
		{"event time fractional", withData("E", `1.5`), reasonBadField},
		{"event time negative", withData("E", `-1`), reasonBadField},
		{"symbol of another pair", withData("s", `"ETHBTC"`), reasonSymbolMismatch},
		{"zero price", withData("c", `"0"`), reasonInvalidTick},
		{"negative price", withData("c", `"-0.0025"`), reasonInvalidTick},
	}
}

func TestDecodeRefusesMalformedFrames(t *testing.T) {
	for _, tc := range badFrames(t) {
		t.Run(tc.name, func(t *testing.T) {
			var got tick.Tick
			kind, _, _, err := testDecoder("BNBBTC").decode([]byte(tc.frame), &got)
			var m *malformed
			if !errors.As(err, &m) {
				t.Fatalf("decode(%s) = kind %d, err %v; want a malformed frame (%s)", tc.frame, kind, err, tc.reason)
			}
			if m.reason != tc.reason {
				t.Errorf("reason = %s (%s), want %s", m.reason, m.detail, tc.reason)
			}
		})
	}
}

func TestDecodeControlFrames(t *testing.T) {
	for _, tc := range []struct {
		name, frame string
		kind        frameKind
		info        string
	}{
		{"error frame", `{"code": 0, "msg": "Unknown property", "id": 1}`, frameError, `code=0 msg="Unknown property"`},
		{"error frame, escaped msg", `{"code":-1121,"msg":"Invalid \"symbol\"."}`, frameError, `code=-1121 msg="Invalid \"symbol\"."`},
		{"serverShutdown, bare", `{"e":"serverShutdown","E":1770123456789}`, frameShutdown, ""},
		{"serverShutdown, WebSocket API form", `{"event":{"e":"serverShutdown","E":1770123456789}}`, frameShutdown, ""},
		{"serverShutdown, on a stream", `{"stream":"bnbbtc@ticker","data":{"e":"serverShutdown","E":1770123456789}}`, frameShutdown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got tick.Tick
			kind, _, info, err := testDecoder("BNBBTC").decode([]byte(tc.frame), &got)
			if err != nil || kind != tc.kind || info != tc.info {
				t.Errorf("decode = kind %d, info %q, err %v; want kind %d, info %q", kind, info, err, tc.kind, tc.info)
			}
		})
	}
}

// FuzzDecode: no input crashes the decoder, and anything it accepts as a
// ticker is a valid tick.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(sampleTicker))
	for _, m := range samples(f) { // every documented Binance message
		f.Add([]byte(m))
	}
	for _, b := range badFrames(f) {
		f.Add([]byte(b.frame))
	}
	d := testDecoder("BNBBTC")
	f.Fuzz(func(t *testing.T, frame []byte) {
		var got tick.Tick
		kind, _, _, err := d.decode(frame, &got)
		if err == nil && kind == frameTicker {
			if verr := got.Validate(); verr != nil {
				t.Fatalf("accepted an invalid tick %s: %v", tickJSON(&got), verr)
			}
			if !json.Valid(frame) {
				t.Fatalf("accepted invalid JSON %q", frame)
			}
		}
	})
}

// BenchmarkDecodeTicker is Binance frame -> Tick, the per-message cost of
// the read loop. The baselines decode the same frame with encoding/json,
// into a struct of strings and into a map, each then parsed exactly.
func BenchmarkDecodeTicker(b *testing.B) {
	frame := []byte(sampleTicker)
	b.Run("scanner", func(b *testing.B) {
		d := testDecoder("BNBBTC")
		var t tick.Tick
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			if _, _, _, err := d.decode(frame, &t); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json_struct", func(b *testing.B) {
		var t tick.Tick
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			var env struct {
				Stream string `json:"stream"`
				// encoding/json matches keys case-insensitively: without
				// the upper-case twins declared, "B" (bid size) would
				// overwrite "b" (bid price) and "e" would land in E.
				Data struct {
					EventType string          `json:"e"`
					EventTime int64           `json:"E"`
					P2        json.RawMessage `json:"P"`
					C2        json.RawMessage `json:"C"`
					Q2        json.RawMessage `json:"Q"`
					B2        json.RawMessage `json:"B"`
					A2        json.RawMessage `json:"A"`
					O2        json.RawMessage `json:"O"`
					L2        json.RawMessage `json:"L"`
					Symbol    string          `json:"s"`
					C         string          `json:"c"`
					V         string          `json:"v"`
					B         string          `json:"b"`
					A         string          `json:"a"`
					O         string          `json:"o"`
					H         string          `json:"h"`
					L         string          `json:"l"`
					Q         string          `json:"q"`
				} `json:"data"`
			}
			if err := json.Unmarshal(frame, &env); err != nil {
				b.Fatal(err)
			}
			t = tick.Tick{Exchange: Exchange, Symbol: env.Data.Symbol, Timestamp: env.Data.EventTime}
			for _, f := range []struct {
				d *apd.Decimal
				s string
			}{{&t.Price, env.Data.C}, {&t.Volume, env.Data.V}, {&t.Bid, env.Data.B}, {&t.Ask, env.Data.A},
				{&t.Open24h, env.Data.O}, {&t.High24h, env.Data.H}, {&t.Low24h, env.Data.L}, {&t.QuoteVolume, env.Data.Q}} {
				if err := tick.ParseDecimal(f.d, f.s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("encoding_json_map", func(b *testing.B) {
		var t tick.Tick
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			var env map[string]any
			if err := json.Unmarshal(frame, &env); err != nil {
				b.Fatal(err)
			}
			d := env["data"].(map[string]any)
			t = tick.Tick{Exchange: Exchange, Symbol: d["s"].(string), Timestamp: int64(d["E"].(float64))}
			for k, dst := range map[string]*apd.Decimal{"c": &t.Price, "v": &t.Volume, "b": &t.Bid, "a": &t.Ask,
				"o": &t.Open24h, "h": &t.High24h, "l": &t.Low24h, "q": &t.QuoteVolume} {
				if err := tick.ParseDecimal(dst, d[k].(string)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
