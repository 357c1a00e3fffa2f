package push

import (
	"fmt"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
)

func TestSubscribeFiltersAndSnapshot(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	// The hub learns the latest tick of each pair before anyone connects;
	// the snapshot must carry the newest one per pair.
	write(t, ts.Sink,
		mkTick("binance", "BTCUSDT", "100", 1),
		mkTick("binance", "BTCUSDT", "101", 2),
		mkTick("binance", "ETHUSDT", "10", 3),
		mkTick("okx", "BTCUSDT", "102", 4),
	)
	testkit.Eventually(t, 5*time.Second, "hub to hold 3 pairs", func() bool { return len(ts.hub.lastTicks()) == 3 })

	tests := []struct {
		name     string
		sub      string
		snapshot []string // pair:price
		live     []string // pairs of the live ticks below that must arrive, in order
		wantEcho frame
	}{
		{
			name:     "everything",
			sub:      `{"type":"subscribe"}`,
			snapshot: []string{"binance:BTCUSDT:101", "binance:ETHUSDT:10", "okx:BTCUSDT:102"},
			wantEcho: frame{Type: "subscribed", Channels: []string{"tick", "alert", "signal"}, Exchanges: []string{}, Symbols: []string{}, Subscriptions: 3, Snapshot: 3},
			live:     []string{"binance:BTCUSDT:103", "okx:ETHUSDT:11"},
		},
		{
			name:     "one symbol on every exchange",
			sub:      `{"type":"subscribe","channels":["tick"],"symbols":["btcusdt"]}`,
			snapshot: []string{"binance:BTCUSDT:101", "okx:BTCUSDT:102"},
			wantEcho: frame{Type: "subscribed", Channels: []string{"tick"}, Exchanges: []string{}, Symbols: []string{"BTCUSDT"}, Subscriptions: 1, Snapshot: 2},
			live:     []string{"binance:BTCUSDT:103"},
		},
		{
			name:     "one exchange",
			sub:      `{"type":"subscribe","channels":["tick"],"exchanges":["OKX"]}`,
			snapshot: []string{"okx:BTCUSDT:102"},
			wantEcho: frame{Type: "subscribed", Channels: []string{"tick"}, Exchanges: []string{"okx"}, Symbols: []string{}, Subscriptions: 1, Snapshot: 1},
			live:     []string{"okx:ETHUSDT:11"},
		},
		{
			name:     "exact pairs",
			sub:      `{"type":"subscribe","channels":["tick"],"exchanges":["binance"],"symbols":["ETHUSDT","SOLUSDT"]}`,
			snapshot: []string{"binance:ETHUSDT:10"},
			wantEcho: frame{Type: "subscribed", Channels: []string{"tick"}, Exchanges: []string{"binance"}, Symbols: []string{"ETHUSDT", "SOLUSDT"}, Subscriptions: 2, Snapshot: 1},
			live:     []string{"binance:SOLUSDT:1"},
		},
		{
			name:     "alerts only: no tick snapshot, no ticks",
			sub:      `{"type":"subscribe","channels":["alert"]}`,
			wantEcho: frame{Type: "subscribed", Channels: []string{"alert"}, Exchanges: []string{}, Symbols: []string{}, Subscriptions: 1, Snapshot: 0},
		},
	}
	var conns []*websocket.Conn
	for _, tt := range tests {
		c := dial(t, ts, "")
		echo, snap := subscribe(t, c, tt.sub)
		echo.Data = nil
		if !reflect.DeepEqual(echo, tt.wantEcho) {
			t.Errorf("%s: echo = %+v, want %+v", tt.name, echo, tt.wantEcho)
		}
		var got []string
		for _, tk := range snap {
			got = append(got, tk.Key()+":"+tk.Price.String())
		}
		if !reflect.DeepEqual(got, tt.snapshot) {
			t.Errorf("%s: snapshot = %v, want %v", tt.name, got, tt.snapshot)
		}
		conns = append(conns, c)
	}
	// Live ticks: each connection gets exactly the ones its filter matches.
	write(t, ts.Sink,
		mkTick("binance", "BTCUSDT", "103", 5),
		mkTick("okx", "ETHUSDT", "11", 6),
		mkTick("binance", "SOLUSDT", "1", 7),
	)
	ts.raise(t, signal.Topic, "okx:ETHUSDT", []byte(`{"side":"buy"}`))
	ts.raise(t, alert.Topic, "binance:BTCUSDT", []byte(`{"rule":"spike"}`))
	for i, tt := range tests {
		c := conns[i]
		var got []string
		// A ping marks the end of what the connection should have got.
		send(t, c, `{"type":"ping"}`)
		for {
			f := read(t, c)
			if f.Type == "pong" {
				break
			}
			switch f.Type {
			case "tick":
				tk := f.tick(t)
				got = append(got, tk.Key()+":"+tk.Price.String())
			case "alert", "signal":
				got = append(got, f.Type+"@"+f.Key+string(f.Data))
			default:
				t.Fatalf("%s: unexpected %+v", tt.name, f)
			}
		}
		want := tt.live
		switch tt.name {
		case "everything":
			want = append(append([]string{}, want...), "binance:SOLUSDT:1", `signal@okx:ETHUSDT{"side":"buy"}`, `alert@binance:BTCUSDT{"rule":"spike"}`)
		case "alerts only: no tick snapshot, no ticks":
			want = []string{`alert@binance:BTCUSDT{"rule":"spike"}`}
		}
		if !sameSet(got, want) {
			t.Errorf("%s: live = %v, want %v", tt.name, got, want)
		}
	}
}

// sameSet compares ignoring order across pairs; per-pair order is tested
// where it matters.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestUnsubscribeAndOverlap(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	c := dial(t, ts, "")
	subscribe(t, c, `{"type":"subscribe","channels":["tick"]}`)
	// Overlapping subscriptions add up, but a tick matching both arrives once.
	f, _ := subscribe(t, c, `{"type":"subscribe","channels":["tick"],"symbols":["BTCUSDT"]}`)
	if f.Subscriptions != 2 {
		t.Fatalf("subscriptions = %d, want 2", f.Subscriptions)
	}
	write(t, ts.Sink, mkTick("binance", "BTCUSDT", "1", 1))
	if g := read(t, c); g.Type != "tick" {
		t.Fatalf("got %+v", g)
	}
	send(t, c, `{"type":"ping"}`)
	if g := read(t, c); g.Type != "pong" {
		t.Fatalf("duplicate delivery: got %+v, want pong", g)
	}
	// Removing the wildcard keeps the BTCUSDT subscription.
	send(t, c, `{"type":"unsubscribe","channels":["tick"]}`)
	if g := read(t, c); g.Type != "unsubscribed" || g.Subscriptions != 1 {
		t.Fatalf("got %+v, want unsubscribed with 1 left", g)
	}
	write(t, ts.Sink, mkTick("binance", "ETHUSDT", "1", 2), mkTick("binance", "BTCUSDT", "2", 3))
	if g := read(t, c); g.Type != "tick" || g.tick(t).Symbol != "BTCUSDT" {
		t.Fatalf("got %+v, want the BTCUSDT tick only", g)
	}
	send(t, c, `{"type":"unsubscribe","symbols":["BTCUSDT"]}`)
	if g := read(t, c); g.Type != "unsubscribed" || g.Subscriptions != 0 {
		t.Fatalf("got %+v, want unsubscribed with 0 left", g)
	}
	write(t, ts.Sink, mkTick("binance", "BTCUSDT", "3", 4))
	send(t, c, `{"type":"ping"}`)
	if g := read(t, c); g.Type != "pong" {
		t.Fatalf("got %+v after unsubscribing everything, want pong", g)
	}
}

func TestBadRequestsKeepTheConnection(t *testing.T) {
	ts := startSink(t, func(c *Config) { c.Limits.MaxSubscriptions = 4 })
	tests := []struct {
		name, msg, code string
	}{
		{"invalid JSON", `{"type":`, codeBadJSON},
		{"not an object", `[1,2]`, codeBadJSON},
		{"wrong field type", `{"type":"subscribe","symbols":"BTCUSDT"}`, codeBadJSON},
		{"missing type", `{}`, codeUnknownType},
		{"unknown type", `{"type":"hello"}`, codeUnknownType},
		{"unknown channel", `{"type":"subscribe","channels":["trades"]}`, codeUnknownChannel},
		{"empty symbol", `{"type":"subscribe","symbols":[""]}`, codeBadFilter},
		{"symbol with a colon", `{"type":"subscribe","symbols":["A:B"]}`, codeBadFilter},
		{"too many symbols at once", `{"type":"subscribe","channels":["tick"],"symbols":["A","B","C","D","E"]}`, codeTooManySubs},
		{"too many over time", `{"type":"subscribe","channels":["tick","alert","signal"],"symbols":["Z","Y"]}`, codeTooManySubs},
	}
	c := dial(t, ts, "")
	subscribe(t, c, `{"type":"subscribe","channels":["tick"],"symbols":["X"]}`)
	for _, tt := range tests {
		send(t, c, tt.msg)
		f := read(t, c)
		if f.Type != "error" || f.Code != tt.code || f.Message == "" {
			t.Errorf("%s: got %+v, want error %s", tt.name, f, tt.code)
		}
	}
	// Still open, and the refused subscribes added nothing.
	f, _ := subscribe(t, c, `{"type":"subscribe","channels":["tick"],"symbols":["Y"]}`)
	if f.Subscriptions != 2 {
		t.Errorf("subscriptions = %d, want 2 (refused requests must add nothing)", f.Subscriptions)
	}
	if got := counter(ts, "tickflow_push_client_errors_total", "code", codeBadJSON); got != 3 {
		t.Errorf("bad_json errors metric = %v, want 3", got)
	}
}

func TestPingPong(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	c := dial(t, ts, "")
	for i := range 3 {
		send(t, c, `{"type":"ping"}`)
		if f := read(t, c); f.Type != "pong" {
			t.Fatalf("ping %d: got %+v", i, f)
		}
	}
}

func TestServerPingsDropDeadPeers(t *testing.T) {
	ts := startSink(t, func(c *Config) {
		c.PingInterval = 50 * time.Millisecond
		c.PingTimeout = 100 * time.Millisecond
	})
	alive := dial(t, ts, "")
	dead := dial(t, ts, "")
	// coder/websocket answers pings only while reading: the "dead" client
	// never reads, like a peer that vanished.
	alive.CloseRead(t.Context())
	_ = dead
	testkit.Eventually(t, 10*time.Second, "the dead peer to be dropped", func() bool {
		return counter(ts, "tickflow_push_disconnects_total", "reason", "ping_timeout") == 1
	})
	// The live client went through the same ping rounds and is still here.
	testkit.Eventually(t, 5*time.Second, "the dead peer's handler to finish", func() bool {
		return counter(ts, "tickflow_push_connections") == 1
	})
	if err := alive.Ping(t.Context()); err != nil {
		t.Fatalf("live client lost its connection: %v", err)
	}
}

func TestOriginCheck(t *testing.T) {
	tests := []struct {
		patterns []string
		host     string
		origin   string
		want     bool
	}{
		{nil, "localhost:8081", "", true},                      // not a browser
		{nil, "localhost:8081", "http://localhost:8080", true}, // the page on the API port
		{nil, "LOCALHOST:8081", "http://localhost", true},      // case
		{nil, "127.0.0.1:8081", "http://evil.example", false},  // default: same host only
		{nil, "[::1]:8081", "http://[::1]:8080", true},         // IPv6
		{nil, "localhost:8081", "null", false},                 // sandboxed page
		{[]string{"*.example.com"}, "10.0.0.1:8081", "https://app.example.com", true},
		{[]string{"*.example.com"}, "10.0.0.1:8081", "https://example.org", false},
		{[]string{"https://app.example.com"}, "h:1", "http://app.example.com", false}, // scheme pattern
		{[]string{"https://app.example.com"}, "h:1", "https://app.example.com", true},
		{[]string{"*"}, "h:1", "http://anything.test", true},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Host = tt.host
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := originAllowed(r, tt.patterns); got != tt.want {
			t.Errorf("patterns %v host %s origin %q: got %v, want %v", tt.patterns, tt.host, tt.origin, got, tt.want)
		}
	}
	// End to end: a foreign page is refused at the handshake.
	ts := startSink(t, func(*Config) {})
	if _, err := tryDial(ts, "http://evil.example"); err == nil {
		t.Fatal("foreign origin accepted")
	}
	dial(t, ts, fmt.Sprintf("http://127.0.0.1:%d", 8080))
	if got := counter(ts, "tickflow_push_connections_total", "result", "origin_rejected"); got != 1 {
		t.Errorf("origin_rejected = %v, want 1", got)
	}
}
