package tick

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/cockroachdb/apd/v3"
)

func sample() Tick {
	return Tick{
		Exchange: "binance", Symbol: "BTCUSDT", Base: "BTC", Quote: "USDT", Timestamp: 1672515782136,
		Price: MustDecimal("50100.00"), Volume: MustDecimal("1234.56780000"),
		Bid: MustDecimal("50099.99"), Ask: MustDecimal("50100.01"),
		Open24h: MustDecimal("49000.10"), High24h: MustDecimal("51000"), Low24h: MustDecimal("48000.5"),
		QuoteVolume: MustDecimal("61234567.123456789012345678"), ReceivedAt: 1672515782140123,
	}
}

func TestRoundTripIsExact(t *testing.T) {
	in := sample()
	b := in.AppendJSON(nil)
	want := `{"exchange":"binance","symbol":"BTCUSDT","base":"BTC","quote":"USDT","timestamp":1672515782136,"price":"50100.00","volume":"1234.56780000","bid":"50099.99","ask":"50100.01","open_24h":"49000.10","high_24h":"51000","low_24h":"48000.5","quote_volume":"61234567.123456789012345678","received_at_us":1672515782140123}`
	if string(b) != want {
		t.Fatalf("encoded\n %s\nwant\n %s", b, want)
	}
	var out Tick
	if err := Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if again := out.AppendJSON(nil); string(again) != want {
		t.Fatalf("re-encoded\n %s\nwant\n %s", again, want)
	}
	// encoding/json agrees with the hand-written codec in both directions.
	var viaStd Tick
	if err := json.Unmarshal(b, &viaStd); err != nil {
		t.Fatal(err)
	}
	std, _ := json.Marshal(viaStd)
	if string(std) != want {
		t.Fatalf("encoding/json round trip\n %s", std)
	}
	// And the output is valid JSON with the seed's field names.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"exchange", "symbol", "timestamp", "price", "volume", "bid", "ask"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
}

func TestOptionalFieldsOmittedWhenAbsent(t *testing.T) {
	in := Tick{Exchange: "sim", Symbol: "ETHUSDT", Timestamp: 1, Price: MustDecimal("1.5"), Volume: MustDecimal("0"), Bid: MustDecimal("1.4"), Ask: MustDecimal("1.6")}
	got := string(in.AppendJSON(nil))
	want := `{"exchange":"sim","symbol":"ETHUSDT","timestamp":1,"price":"1.5","volume":"0","bid":"1.4","ask":"1.6"}`
	if got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

// Records written before the instrument model have no base or quote; they
// decode with both empty, and a tick without them encodes without them.
// Assets outside the interned set decode too.
func TestInstrumentFields(t *testing.T) {
	for _, tc := range []struct {
		name, in          string
		base, quote, inst string
	}{
		{"old record", `{"exchange":"binance","symbol":"BTCUSDT","timestamp":5,"price":"1","volume":"1","bid":"1","ask":"1"}`, "", "", ""},
		{"new record", `{"exchange":"kraken","symbol":"XBT/USD","base":"BTC","quote":"USD","timestamp":5,"price":"1","volume":"1","bid":"1","ask":"1"}`, "BTC", "USD", "BTC-USD"},
		{"uncommon assets", `{"exchange":"okx","symbol":"PEPE-TRY","base":"PEPE","quote":"TRY","timestamp":5,"price":"1","volume":"1","bid":"1","ask":"1"}`, "PEPE", "TRY", "PEPE-TRY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tk Tick
			if err := Unmarshal([]byte(tc.in), &tk); err != nil {
				t.Fatal(err)
			}
			if tk.Base != tc.base || tk.Quote != tc.quote || tk.Instrument() != tc.inst {
				t.Fatalf("base %q quote %q instrument %q, want %q %q %q", tk.Base, tk.Quote, tk.Instrument(), tc.base, tc.quote, tc.inst)
			}
			if err := tk.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := string(tk.AppendJSON(nil)); got != tc.in {
				t.Fatalf("re-encoded\n %s\nwant\n %s", got, tc.in)
			}
		})
	}
	half := sample()
	half.Quote = ""
	if err := half.Validate(); !errors.Is(err, ErrHalfAssets) {
		t.Fatalf("half an instrument: %v, want ErrHalfAssets", err)
	}
}

func TestDecodeAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, in, price string
	}{
		{"bare number price", `{"exchange":"binance","symbol":"X","timestamp":5,"price":1.10,"volume":"1","bid":"1","ask":"1"}`, "1.10"},
		{"whitespace and unknown fields", ` { "future" : {"a":[1,2,{"b":null}]}, "exchange":"binance" , "symbol":"X","timestamp":5,"price":"2.000","flag":true,"volume":"1","bid":"1","ask":"1" } `, "2.000"},
		{"escaped symbol", `{"exchange":"bin\u0061nce","symbol":"X","timestamp":5,"price":"3","volume":"1","bid":"1","ask":"1"}`, "3"},
		{"tiny exponent", `{"exchange":"binance","symbol":"X","timestamp":5,"price":"0.00000001","volume":"1","bid":"1","ask":"1"}`, "1E-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tk Tick
			if err := Unmarshal([]byte(tc.in), &tk); err != nil {
				t.Fatal(err)
			}
			if tk.Price.String() != tc.price {
				t.Fatalf("price %s, want %s", tk.Price.String(), tc.price)
			}
			if tk.Exchange != "binance" {
				t.Fatalf("exchange %q", tk.Exchange)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, in, wantSub string }{
		{"empty", ``, "expected '{'"},
		{"truncated", `{"exchange":"binance","price":"1`, "unterminated"},
		{"NaN price", `{"price":"NaN"}`, "not finite"},
		{"empty price", `{"price":""}`, "empty decimal"},
		{"text price", `{"price":"abc"}`, "bad decimal"},
		{"float timestamp", `{"timestamp":1.5}`, "expected"},
		{"trailing garbage", `{"symbol":"X"} x`, "trailing"},
		{"deep nesting", `{"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, "too deep"},
		{"missing colon", `{"symbol" "X"}`, "expected ':'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tk Tick
			err := Unmarshal([]byte(tc.in), &tk)
			if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.wantSub) {
				t.Fatalf("err = %v, want ErrSyntax containing %q", err, tc.wantSub)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := sample()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mut  func(*Tick)
		want error
	}{
		{"no exchange", func(t *Tick) { t.Exchange = "" }, ErrNoExchange},
		{"no symbol", func(t *Tick) { t.Symbol = "" }, ErrNoSymbol},
		{"no time", func(t *Tick) { t.Timestamp = 0 }, ErrNoTime},
		{"zero price", func(t *Tick) { t.Price = MustDecimal("0") }, ErrBadPrice},
		{"negative price", func(t *Tick) { t.Price = MustDecimal("-1") }, ErrBadPrice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := sample()
			tc.mut(&tk)
			if err := tk.Validate(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	tk := sample()
	if tk.Key() != "binance:BTCUSDT" || string(tk.AppendKey(nil)) != "binance:BTCUSDT" {
		t.Fatalf("key %q", tk.Key())
	}
}

func FuzzUnmarshal(f *testing.F) {
	s := sample()
	f.Add(s.AppendJSON(nil))
	f.Add([]byte(`{"price":1e5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var tk Tick
		if Unmarshal(b, &tk) != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		var again Tick
		if err := Unmarshal(tk.AppendJSON(nil), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	tk := sample()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = tk.AppendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecode(b *testing.B) {
	tk := sample()
	data := tk.AppendJSON(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var out Tick
	for b.Loop() {
		if err := Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeEncodingJSON(b *testing.B) {
	// The baseline the hand-written codec is measured against.
	type std struct {
		Exchange, Symbol, Base, Quote string
		Timestamp                     int64
		Price, Volume                 string
		Bid, Ask                      string
		Open24h                       string `json:"open_24h"`
		High24h                       string `json:"high_24h"`
		Low24h                        string `json:"low_24h"`
		QuoteVolume                   string `json:"quote_volume"`
		ReceivedAt                    int64  `json:"received_at_us"`
	}
	tk := sample()
	data := tk.AppendJSON(nil)
	b.ReportAllocs()
	for b.Loop() {
		var s std
		if err := json.Unmarshal(data, &s); err != nil {
			b.Fatal(err)
		}
	}
}

// The fast decimal paths must agree with apd's general ones everywhere.
func TestFastDecimalMatchesApd(t *testing.T) {
	for _, s := range []string{"0", "0.0", "00.10", "1", "-1", "-0.5", "50100.00", "0.00000001", "123456789012345678",
		"1234567890123456789", "12345678901234567.89", "999999999999999999", "1.", ".5", "-", "-0", "-0.00", "1e5", "1E-3", "+1", "1..2", "abc"} {
		t.Run(s, func(t *testing.T) {
			var fast, slow apd.Decimal
			errFast := ParseDecimal(&fast, s)
			_, _, errSlow := slow.SetString(s)
			if (errFast == nil) != (errSlow == nil) {
				t.Fatalf("ParseDecimal err %v, apd err %v", errFast, errSlow)
			}
			if errFast != nil {
				return
			}
			if fast.CmpTotal(&slow) != 0 || fast.Exponent != slow.Exponent || fast.Negative != slow.Negative {
				t.Fatalf("ParseDecimal %s (exp %d), apd %s (exp %d)", fast.String(), fast.Exponent, slow.String(), slow.Exponent)
			}
			if got, want := string(appendDecimal(nil, &fast)), slow.Text('f'); got != want {
				t.Fatalf("appendDecimal %q, apd %q", got, want)
			}
		})
	}
}

// typical is a Binance BTCUSDT ticker as it arrives: 8-decimal prices and
// sizes, all within the allocation-free fast path.
func typical() Tick {
	return Tick{
		Exchange: "binance", Symbol: "BTCUSDT", Base: "BTC", Quote: "USDT", Timestamp: 1672515782136,
		Price: MustDecimal("50100.01000000"), Volume: MustDecimal("21345.67890000"),
		Bid: MustDecimal("50100.00000000"), Ask: MustDecimal("50100.01000000"),
		Open24h: MustDecimal("49000.10000000"), High24h: MustDecimal("51000.00000000"), Low24h: MustDecimal("48000.50000000"),
		QuoteVolume: MustDecimal("1069432123.45678901"), ReceivedAt: 1672515782140123,
	}
}

func BenchmarkEncodeTypical(b *testing.B) {
	tk := typical()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = tk.AppendJSON(buf[:0])
	}
}

func BenchmarkDecodeTypical(b *testing.B) {
	tk := typical()
	data := tk.AppendJSON(nil)
	b.ReportAllocs()
	var out Tick
	for b.Loop() {
		if err := Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// ParseDecimalBytes, which exchange decoders call on every field of every
// frame, agrees with apd on value, exponent and sign, accepts only finite
// decimals, and allocates nothing on the plain decimals exchanges send.
func checkParseDecimalBytes(t *testing.T, s string) {
	var got, want apd.Decimal
	err := ParseDecimalBytes(&got, []byte(s))
	_, _, werr := want.SetString(s)
	if werr == nil && want.Form != apd.Finite {
		werr = errors.New("not finite")
	}
	if s == "" {
		werr = errors.New("empty")
	}
	if (err == nil) != (werr == nil) {
		t.Fatalf("%q: ParseDecimalBytes err %v, apd err %v", s, err, werr)
	}
	if err == nil && (got.CmpTotal(&want) != 0 || got.Exponent != want.Exponent || got.Negative != want.Negative) {
		t.Fatalf("%q: ParseDecimalBytes %s (exp %d), apd %s (exp %d)", s, &got, got.Exponent, &want, want.Exponent)
	}
}

func TestParseDecimalBytes(t *testing.T) {
	for _, s := range []string{
		"0", "0.0025", "25.35190000", "10000", "-0.5", "-0", "0.000", "00.5", ".5", "5.", ".", "-", "+5", "",
		"1e5", "1E-3", "9999999999999999999", "18446744073709551615", "99999999999999999999",
		"0.00000000000000000001", "1.2.3", "1,5", " 1", "1 ", "NaN", "inf", "-Infinity", "0x10", "١",
	} {
		checkParseDecimalBytes(t, s)
	}
	frame := []byte(`"c":"50100.01000000"`)
	var d apd.Decimal
	if n := testing.AllocsPerRun(100, func() { _ = ParseDecimalBytes(&d, frame[5:19]) }); n != 0 {
		t.Fatalf("%v allocations per plain decimal, want 0", n)
	}
}

func FuzzParseDecimalBytes(f *testing.F) {
	for _, s := range []string{"0.0025", "25.35190000", "-0", ".5", "1e5", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(checkParseDecimalBytes)
}

func TestUnmarshalInterned(t *testing.T) {
	enc := func(ex, sym string) []byte {
		tk := Tick{Exchange: ex, Symbol: sym, Timestamp: 1, Price: *apd.New(1, 0)}
		return tk.AppendJSON(nil)
	}
	in := &Strings{Max: 2}
	decode := func(b []byte) Tick {
		t.Helper()
		var got, want Tick
		if err := UnmarshalInterned(b, &got, in); err != nil {
			t.Fatal(err)
		}
		if err := Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if got.Exchange != want.Exchange || got.Symbol != want.Symbol || got.Price.Cmp(&want.Price) != 0 {
			t.Fatalf("interned decode %+v, plain %+v", got, want)
		}
		return got
	}
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	a1, a2 := decode(enc("bench", "BTCUSDT")), decode(enc("bench", "BTCUSDT"))
	if !same(a1.Symbol, a2.Symbol) || !same(a1.Exchange, a2.Exchange) {
		t.Error("the same names decoded twice were not shared")
	}
	// Max 2 is now full ("bench", "BTCUSDT"): a third name still decodes
	// right, but is not kept (beyond the symbol slot's memory of the last
	// one, which another symbol in between replaces).
	c1 := decode(enc("bench", "ETHUSDT"))
	decode(enc("bench", "BTCUSDT"))
	c2 := decode(enc("bench", "ETHUSDT"))
	if same(c1.Symbol, c2.Symbol) {
		t.Error("a name past Max was interned")
	}
	if len(in.m) != 2 {
		t.Errorf("table holds %d names, Max is 2", len(in.m))
	}
}

func BenchmarkDecodeTypicalInterned(b *testing.B) {
	tk := typical()
	tk.Symbol = "P0042USDT" // not an interned exchange-name constant, like most symbols
	data := tk.AppendJSON(nil)
	var in Strings
	b.ReportAllocs()
	var out Tick
	for b.Loop() {
		if err := UnmarshalInterned(data, &out, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// As a consumer sees them: 1000 pairs of one exchange and quote asset, round
// robin, so the symbol and base change on every record.
func BenchmarkDecodeRotatingInterned(b *testing.B) {
	data := make([][]byte, 1000)
	for i := range data {
		tk := typical()
		tk.Symbol, tk.Base, tk.Quote = fmt.Sprintf("P%04dUSDT", i), fmt.Sprintf("P%04d", i), "USDT"
		data[i] = tk.AppendJSON(nil)
	}
	var in Strings
	b.ReportAllocs()
	var out Tick
	i := 0
	for b.Loop() {
		if err := UnmarshalInterned(data[i%len(data)], &out, &in); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
