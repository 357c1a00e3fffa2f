package journal

import (
	"testing"

	"github.com/tickflow/tickflow/tick"
)

func TestTicksRoundTrip(t *testing.T) {
	in := []tick.Tick{
		{Exchange: "binance", Symbol: "BTCUSDT", Timestamp: 1, Price: tick.MustDecimal("50100.00")},
		{Exchange: "okx", Symbol: "ETH-USDT", Timestamp: 2, Price: tick.MustDecimal("7")},
	}
	var block []byte
	for i := range in {
		block = AppendTick(block, &in[i])
	}
	out, err := Ticks(block)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Price.String() != "50100.00" || out[1].Symbol != "ETH-USDT" || out[1].Timestamp != 2 {
		t.Fatalf("decoded %+v", out)
	}
	if _, err := Ticks(block[:len(block)-3]); err == nil {
		t.Fatal("a truncated block decoded")
	}
	if out, err := Ticks(nil); err != nil || len(out) != 0 {
		t.Fatalf("empty block: %v, %v", out, err)
	}
}
