package tick

import "testing"

func TestGapRoundTrip(t *testing.T) {
	g := Gap{Exchange: "okx", Symbol: "BTC-USDT", From: 1, To: 5, Reason: GapReconnect, Cause: "stale", DetectedAt: 9}
	b, err := MarshalGap(&g)
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalGap(b)
	if err != nil || back != g {
		t.Fatalf("round trip %s: %+v, %v", b, back, err)
	}
	if g.Key() != "okx:BTC-USDT" || g.ID() == "" || g.Duration() != 4e6 {
		t.Errorf("key %q id %q duration %s", g.Key(), g.ID(), g.Duration())
	}
	for _, bad := range []string{`{"exchange":"okx","symbol":"X","from":5,"to":1,"reason":"reconnect"}`, `{"symbol":"X","reason":"reconnect"}`, `[`} {
		if _, err := UnmarshalGap([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
