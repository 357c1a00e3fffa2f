package wire

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/tick"
)

func TestNumKeepsTheLiteral(t *testing.T) {
	for _, tc := range []struct {
		json, want string
		err        string // substring of the Decimal error; "" for none
	}{
		{`{"n":"9999.990"}`, "9999.990", ""},
		{`{"n":740.0}`, "740.0", ""},
		{`{"n":-0.00017}`, "-0.00017", ""},
		{`{"n":1.0035e-1}`, "0.10035", ""},
		{`{"n":"0.1\u0030"}`, "0.10", ""},
		{`{"n":123456789012345678901234.123456789}`, "123456789012345678901234.123456789", ""},
		{`{}`, "", "no n"},
		{`{"n":null}`, "", "null"},
		{`{"n":""}`, "", "empty decimal"},
		{`{"n":"NaN"}`, "", "not finite"},
		{`{"n":"1,5"}`, "", "bad decimal"},
	} {
		var v struct {
			N Num `json:"n"`
		}
		if err := Unmarshal([]byte(tc.json), &v); err != nil {
			t.Fatalf("%s: %v", tc.json, err)
		}
		var d = tick.MustDecimal("0")
		err := v.N.Decimal(&d, "n")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.json, err, tc.err)
			}
			continue
		}
		if err != nil || d.Text('f') != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.json, d.Text('f'), err, tc.want)
		}
	}
	var v struct {
		N Num `json:"n"`
	}
	for _, bad := range []string{`{"n":true}`, `{"n":[1]}`, `{"n":{}}`} {
		if err := Unmarshal([]byte(bad), &v); ReasonOf(err) != ReasonBadField {
			t.Errorf("%s: %v, want bad_field", bad, err)
		}
	}
}

func TestNumOptionalAndIntegers(t *testing.T) {
	var v struct {
		A, B, C, D, E Num
	}
	if err := Unmarshal([]byte(`{"A":"","B":null,"C":"12","D":"1597026383085","E":"-3"}`), &v); err != nil {
		t.Fatal(err)
	}
	var d = tick.MustDecimal("5")
	for _, n := range []*Num{&v.A, &v.B, new(Num)} {
		if err := n.OptDecimal(&d, "x"); err != nil || !d.IsZero() {
			t.Errorf("OptDecimal of absent/empty/null: %s, %v", d.String(), err)
		}
	}
	if err := v.C.OptDecimal(&d, "C"); err != nil || d.String() != "12" {
		t.Errorf("OptDecimal: %s, %v", d.String(), err)
	}
	if n, err := v.C.Uint("C"); err != nil || n != 12 {
		t.Errorf("Uint = %d, %v", n, err)
	}
	if _, err := v.E.Uint("E"); ReasonOf(err) != ReasonBadField {
		t.Errorf("Uint(-3): %v", err)
	}
	if _, err := new(Num).Uint("x"); ReasonOf(err) != ReasonMissingField {
		t.Errorf("Uint(absent): %v", err)
	}
	if ms, err := v.D.Millis("D"); err != nil || ms != 1597026383085 {
		t.Errorf("Millis = %d, %v", ms, err)
	}
	if _, err := v.C.Millis("C"); err != nil {
		t.Errorf("Millis(12): %v", err) // tiny but positive: allowed
	}
	var zero Num
	_ = zero.UnmarshalJSON([]byte(`"0"`))
	if _, err := zero.Millis("z"); ReasonOf(err) != ReasonBadField {
		t.Errorf("Millis(0): %v", err)
	}
	if s, err := v.D.Text("D"); err != nil || s != "1597026383085" {
		t.Errorf("Text = %q, %v", s, err)
	}
	if _, err := v.A.Text("A"); ReasonOf(err) != ReasonBadField {
		t.Errorf("Text(\"\"): %v", err)
	}
}

func TestUnmarshalIsCaseSensitiveAndStrict(t *testing.T) {
	var v struct {
		Last string `json:"last"`
	}
	if err := Unmarshal([]byte(`{"last":"1","Last":"5","LAST":"6"}`), &v); err != nil || v.Last != "1" {
		t.Fatalf("got %q, %v", v.Last, err)
	}
	if err := Unmarshal([]byte(`{"last":"1","last":"2"}`), &v); ReasonOf(err) != ReasonBadJSON {
		t.Errorf("duplicate keys: %v", err)
	}
	if err := Unmarshal([]byte("{\"last\":\"\xff\"}"), &v); ReasonOf(err) != ReasonBadJSON {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if err := Unmarshal([]byte(`{"last":1}`), &v); ReasonOf(err) != ReasonBadField {
		t.Errorf("number into string: %v", err)
	}
}

func TestRFC3339Millis(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"2023-02-09T20:30:37.167359596Z", 1675974637167, true},
		{"2023-09-25T09:04:31.742648Z", 1695632671742, true},
		{"2023-09-25T11:04:31.742+02:00", 1695632671742, true},
		{"2023-09-25T09:04:31Z", 1695632671000, true},
		{"", 0, false},
		{"2023-09-25 09:04:31", 0, false},
		{"1969-12-31T23:59:59Z", 0, false},
	} {
		got, err := RFC3339Millis(tc.in, "t")
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q = %d, %v", tc.in, got, err)
		}
	}
}

func TestCheck(t *testing.T) {
	if ReasonOf(Check(nil)) != ReasonBadJSON || ReasonOf(Check(make([]byte, MaxFrame+1))) != ReasonTooLarge || Check([]byte("{}")) != nil {
		t.Fatal("Check")
	}
	if ReasonOf(errors.New("x")) != ReasonBadJSON {
		t.Fatal("ReasonOf of a plain error")
	}
}

func TestTopics(t *testing.T) {
	var nilTopics *Topics
	if !nilTopics.Has("any", "thing") {
		t.Fatal("nil Topics must accept everything")
	}
	var tp Topics
	if tp.Has("tickers", "BTC-USDT") {
		t.Fatal("empty Topics accepted")
	}
	tp.Add("tickers", "BTC-USDT")
	if !tp.Has("tickers", "BTC-USDT") || tp.Has("trades", "BTC-USDT") || tp.Has("tickers", "ETH-USDT") || tp.Has("tickersBTC-USDT", "") {
		t.Fatal("Has")
	}
	tp.Remove("tickers", "BTC-USDT")
	if tp.Has("tickers", "BTC-USDT") {
		t.Fatal("Remove")
	}
	// The writer adds while the read loop checks.
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 1000 {
			tp.Add("c", string(rune('a'+i%26)))
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 1000 {
			tp.Has("c", string(rune('a'+i%26)))
		}
	}()
	wg.Wait()
	if n := testing.AllocsPerRun(100, func() { tp.Has("c", "a") }); n != 0 {
		t.Errorf("Has allocates %v times", n)
	}
}

func TestQuoteValidate(t *testing.T) {
	ok := Quote{Exchange: "okx", Symbol: "BTC-USDT", Timestamp: 1, Bid: tick.MustDecimal("1"), BidSize: tick.MustDecimal("0"), Ask: tick.MustDecimal("2"), AskSize: tick.MustDecimal("3")}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Quote){
		"no exchange": func(q *Quote) { q.Exchange = "" },
		"no symbol":   func(q *Quote) { q.Symbol = "" },
		"no time":     func(q *Quote) { q.Timestamp = 0 },
		"zero bid":    func(q *Quote) { q.Bid = tick.MustDecimal("0") },
		"neg size":    func(q *Quote) { q.AskSize = tick.MustDecimal("-1") },
	} {
		q := ok
		mut(&q)
		if q.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAssetsCache(t *testing.T) {
	var r instrument.Resolver
	_ = r.Add("binance", "ADAEUR", instrument.Instrument{Base: "ADA", Quote: "EUR"})
	a := Assets{Exchange: "binance", Resolver: &r}
	for _, tc := range []struct{ sym, base, quote string }{
		{"BTCUSDT", "BTC", "USDT"}, {"BTCUSDT", "BTC", "USDT"}, {"ADAEUR", "ADA", "EUR"}, {"NOPE", "", ""},
	} {
		if b, q := a.Of(tc.sym); b != tc.base || q != tc.quote {
			t.Errorf("%s = %s/%s", tc.sym, b, q)
		}
	}
	if n := testing.AllocsPerRun(100, func() { a.Of("BTCUSDT") }); n != 0 {
		t.Errorf("a cached Of allocates %v times", n)
	}
}

func TestKindAndReset(t *testing.T) {
	if Data.String() != "data" || Notice.String() != "notice" || Kind(0).String() != "kind(0)" || Kind(99).String() != "kind(99)" {
		t.Fatal("Kind.String")
	}
	f := Frame{Kind: Data, Ticks: make([]tick.Tick, 3), Seqs: make([]Seq, 2), Control: Control{Code: "x"}}
	f.Reset()
	if f.Kind != 0 || len(f.Ticks) != 0 || cap(f.Ticks) != 3 || len(f.Seqs) != 0 || f.Control.Code != "" {
		t.Fatalf("Reset: %+v", f)
	}
}

func TestHostileNestingIsAnError(t *testing.T) {
	// Well-formed nesting half a million deep fits MaxFrame; the JSON
	// decoder's depth limit refuses it without exhausting the stack.
	n := (MaxFrame - 20) / 2
	deep := []byte(`{"data":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`)
	var v struct {
		Data any `json:"data"`
	}
	if err := Check(deep); err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(deep, &v); ReasonOf(err) != ReasonBadJSON || !strings.Contains(err.Error(), "depth") {
		t.Fatalf("err = %v", err)
	}
}
