package tick

import (
	"strings"
	"testing"
)

func TestQuoteRoundTrip(t *testing.T) {
	q, err := UnmarshalQuote([]byte(`{"exchange":"okx","symbol":"BTC-USDT","bid":"60000.10","bid_size":"0.5","ask":"60000.20","ask_size":"1.250","timestamp":5}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalQuote(&q)
	if err != nil || !strings.Contains(string(b), `"bid":"60000.10"`) || !strings.Contains(string(b), `"ask_size":"1.250"`) {
		t.Fatalf("%s %v", b, err)
	}
	if _, err := UnmarshalQuote([]byte(`{"exchange":"okx","symbol":"X","bid":"0","ask":"1","timestamp":5}`)); err == nil {
		t.Error("a zero bid accepted")
	}
}
