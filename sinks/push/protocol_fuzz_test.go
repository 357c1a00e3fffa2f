package push

import (
	"encoding/json"
	"testing"
)

// FuzzClientRequest feeds arbitrary client frames through what the server
// does with one before it touches the hub: decode, validate the lists,
// expand them into subscription keys, and encode the reply. None may
// panic; an accepted request expands to no more keys than the limit, and
// every reply is valid JSON.
func FuzzClientRequest(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","channels":["tick"],"symbols":["BTCUSDT"],"exchanges":["binance"]}`,
		`{"type":"subscribe","channels":["tick","alert","signal"]}`,
		`{"type":"unsubscribe","channels":["tick"],"symbols":["ETHUSDT","btcusdt"]}`,
		`{"type":"ping"}`,
		`{"type":"subscribe","channels":[],"symbols":[],"exchanges":[]}`,
		`{"type":"subscribe","channels":["nope"]}`,
		`{"type":"subscribe","symbols":["a/b","\u0000"]}`,
		`{"type":1}`, `[]`, `null`, `{`,
	} {
		f.Add([]byte(s))
	}
	const limit = 1000
	f.Fuzz(func(t *testing.T, b []byte) {
		var req request
		if err := json.Unmarshal(b, &req); err != nil {
			if !json.Valid(encodeError(codeBadJSON, err.Error())) {
				t.Fatalf("error reply is not JSON")
			}
			return
		}
		fl, pe := parseFilter(&req, limit)
		if pe != nil {
			if !json.Valid(encodeError(pe.code, pe.msg)) {
				t.Fatalf("error reply for %q is not JSON", b)
			}
			return
		}
		if n := len(fl.keys()); n > limit {
			t.Fatalf("accepted %q expanding to %d keys, limit %d", b, n, limit)
		}
		fl.matchesPair("binance", "BTCUSDT")
		if out := encodeSubscribed("subscribed", &fl, 1, 0); !json.Valid(out) {
			t.Fatalf("subscribed reply for %q is not JSON: %s", b, out)
		}
	})
}
