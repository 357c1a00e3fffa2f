package tick

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func sampleTrade() Trade {
	return Trade{
		Exchange: "okx", Symbol: "BTC-USDT", Base: "BTC", Quote: "USDT",
		Price: MustDecimal("42219.90"), Size: MustDecimal("0.12060306"), Side: Buy,
		TradeID: "130639474", Timestamp: 1630048897897, ReceivedAt: 1630048897901234,
	}
}

func TestTradeRoundTripIsExact(t *testing.T) {
	in := sampleTrade()
	b := in.AppendJSON(nil)
	want := `{"exchange":"okx","symbol":"BTC-USDT","base":"BTC","quote":"USDT","timestamp":1630048897897,"price":"42219.90","size":"0.12060306","side":"buy","trade_id":"130639474","received_at_us":1630048897901234}`
	if string(b) != want {
		t.Fatalf("encoded\n %s\nwant\n %s", b, want)
	}
	var out Trade
	if err := UnmarshalTrade(b, &out); err != nil {
		t.Fatal(err)
	}
	if again := out.AppendJSON(nil); string(again) != want {
		t.Fatalf("re-encoded\n %s\nwant\n %s", again, want)
	}
	if err := out.Validate(); err != nil {
		t.Fatal(err)
	}
	// encoding/json agrees with the hand-written codec both ways.
	var viaStd Trade
	if err := json.Unmarshal(b, &viaStd); err != nil {
		t.Fatal(err)
	}
	if std, _ := json.Marshal(viaStd); string(std) != want {
		t.Fatalf("encoding/json round trip\n %s", std)
	}
	if !json.Valid(b) {
		t.Fatal("not valid JSON")
	}
}

func TestTradeOptionalFieldsOmitted(t *testing.T) {
	in := Trade{Exchange: "kraken", Symbol: "FOO/BAR", Timestamp: 1, Price: MustDecimal("1.5"), Size: MustDecimal("2"), Side: Sell, TradeID: "7"}
	got := string(in.AppendJSON(nil))
	want := `{"exchange":"kraken","symbol":"FOO/BAR","timestamp":1,"price":"1.5","size":"2","side":"sell","trade_id":"7"}`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestTradeDecodeAccepts(t *testing.T) {
	for _, tc := range []struct{ name, in, size string }{
		{"bare numbers", `{"exchange":"kraken","symbol":"BTC/USD","timestamp":5,"price":1.10,"size":0.00100000,"side":"sell","trade_id":"1"}`, "0.00100000"},
		{"unknown fields and whitespace", ` {"future":{"a":[1,{"b":null}]}, "exchange":"okx","symbol":"X","timestamp":5,"price":"2","size":"3.0","side":"buy","trade_id":"9","flag":false } `, "3.0"},
		{"escaped trade id", `{"exchange":"bybit","symbol":"X","timestamp":5,"price":"2","size":"1","side":"buy","trade_id":"a\u002db"}`, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr Trade
			if err := UnmarshalTrade([]byte(tc.in), &tr); err != nil {
				t.Fatal(err)
			}
			if tr.Size.Text('f') != tc.size {
				t.Fatalf("size %s, want %s", tr.Size.Text('f'), tc.size)
			}
		})
	}
}

func TestTradeDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, wantSub string }{
		{"empty", ``, "expected '{'"},
		{"truncated", `{"exchange":"okx","price":"1`, "unterminated"},
		{"NaN size", `{"size":"NaN"}`, "not finite"},
		{"empty price", `{"price":""}`, "empty decimal"},
		{"side not a string", `{"side":1}`, "expected string"},
		{"float timestamp", `{"timestamp":1.5}`, "expected"},
		{"trailing garbage", `{"symbol":"X"}]`, "trailing"},
		{"deep nesting", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr Trade
			err := UnmarshalTrade([]byte(tc.in), &tr)
			if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("err = %v, want ErrSyntax containing %q", err, tc.wantSub)
			}
		})
	}
}

func TestTradeValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Trade)
		want error
	}{
		{"ok", func(*Trade) {}, nil},
		{"no base/quote is fine", func(t *Trade) { t.Base, t.Quote = "", "" }, nil},
		{"no exchange", func(t *Trade) { t.Exchange = "" }, ErrNoExchange},
		{"no symbol", func(t *Trade) { t.Symbol = "" }, ErrNoSymbol},
		{"no time", func(t *Trade) { t.Timestamp = 0 }, ErrNoTime},
		{"zero price", func(t *Trade) { t.Price = MustDecimal("0") }, ErrBadPrice},
		{"zero size", func(t *Trade) { t.Size = MustDecimal("0.000") }, ErrBadSize},
		{"negative size", func(t *Trade) { t.Size = MustDecimal("-1") }, ErrBadSize},
		{"no side", func(t *Trade) { t.Side = "" }, ErrBadSide},
		{"maker-style side", func(t *Trade) { t.Side = "Buy" }, ErrBadSide},
		{"no trade id", func(t *Trade) { t.TradeID = "" }, ErrNoTradeID},
		{"half an instrument", func(t *Trade) { t.Quote = "" }, ErrHalfAssets},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := sampleTrade()
			tc.mut(&tr)
			if err := tr.Validate(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSideOpposite(t *testing.T) {
	if Buy.Opposite() != Sell || Sell.Opposite() != Buy || Side("x").Opposite() != "x" {
		t.Fatal("Opposite")
	}
	tr := sampleTrade()
	if tr.Key() != "okx:BTC-USDT" || string(tr.AppendKey(nil)) != "okx:BTC-USDT" || tr.Pair().String() != "okx:BTC-USDT" {
		t.Fatal("key")
	}
}

func FuzzUnmarshalTrade(f *testing.F) {
	s := sampleTrade()
	f.Add(s.AppendJSON(nil))
	f.Add([]byte(`{"price":1e5,"side":"sell","trade_id":"\u0041"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr Trade
		if UnmarshalTrade(b, &tr) != nil {
			return
		}
		// Whatever decodes re-encodes to valid JSON that decodes again, and
		// from then on the encoding is stable (the first pass may turn
		// invalid UTF-8 into U+FFFD).
		enc := tr.AppendJSON(nil)
		if !json.Valid(enc) {
			t.Fatalf("invalid JSON %q", enc)
		}
		var again, third Trade
		if err := UnmarshalTrade(enc, &again); err != nil {
			t.Fatalf("re-decode %q: %v", enc, err)
		}
		enc2 := again.AppendJSON(nil)
		if err := UnmarshalTrade(enc2, &third); err != nil {
			t.Fatalf("re-decode %q: %v", enc2, err)
		}
		if enc3 := third.AppendJSON(nil); string(enc3) != string(enc2) {
			t.Fatalf("not stable:\n %s\n %s", enc2, enc3)
		}
	})
}

func BenchmarkTradeEncode(b *testing.B) {
	tr := sampleTrade()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = tr.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkTradeDecode(b *testing.B) {
	tr := sampleTrade()
	data := tr.AppendJSON(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var out Trade
	for b.Loop() {
		if err := UnmarshalTrade(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTradeDecodeEncodingJSON(b *testing.B) {
	// The baseline: encoding/json into a struct of strings (decimals not
	// even parsed).
	type std struct {
		Exchange, Symbol, Base, Quote string
		Timestamp                     int64
		Price, Size, Side             string
		TradeID                       string `json:"trade_id"`
		ReceivedAt                    int64  `json:"received_at_us"`
	}
	tr := sampleTrade()
	data := tr.AppendJSON(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var s std
		if err := json.Unmarshal(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}
