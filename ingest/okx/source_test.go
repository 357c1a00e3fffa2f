package okx

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/wstest"
)

// The documented frames (shared/exchange-samples/okx.jsonl), with the
// test's price and time.
func okxTicker(inst, last string, ts int64, extra string) string {
	return fmt.Sprintf(`{"arg":{"channel":"tickers","instId":%q},"data":[{"instType":"SPOT","instId":%q,"last":%q,"lastSz":"0.1","askPx":"9999.99","askSz":"11","bidPx":"8888.88","bidSz":"5","open24h":"9000","high24h":"10000","low24h":"8888.88","volCcy24h":"2222","vol24h":"2222","sodUtc0":"2222","sodUtc8":"2222","ts":"%d"%s}]}`,
		inst, inst, last, ts, extra)
}

func TestSource(t *testing.T) {
	wstest.RunSourceSuite(t, wstest.Source{
		Exchange: Exchange,
		Symbol:   "BTC-USDT",
		Start: func(t *testing.T, url string, env wstest.SourceEnv) {
			c := DefaultConfig()
			c.URL, c.Symbols, c.StaleAfter, c.BackoffMin = url, []string{"BTC-USDT"}, time.Hour, time.Second
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			ie := ingest.Env{Queue: env.Queue, Metrics: env.Metrics, Clock: env.Clock, Gaps: env.Gaps}
			if env.Trades != nil {
				c.Trades, ie.Trades = true, env.Trades
			}
			f, err := NewSource(ie, &c)
			if err != nil {
				t.Fatal(err)
			}
			wstest.Run(t, f)
		},
		IsSubscribe: func(m string) bool { return strings.Contains(m, `"op":"subscribe"`) },
		Acks: func(string) []string {
			return []string{`{"id":"sub0","event":"subscribe","arg":{"channel":"tickers","instId":"BTC-USDT"},"connId":"a4d3ae55"}`}
		},
		SubscribeError: func(string) string {
			return `{"id":"sub0","event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}`
		},
		Data: func(price string, ts int64) string { return okxTicker("BTC-USDT", price, ts, "") },
		Bad: []wstest.BadFrame{
			wstest.Bad("missing last", `{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","ts":"1767323045000"}]}`, "missing_field"),
			wstest.Bad("empty last", okxTicker("BTC-USDT", "", 1767323045000, ""), "bad_field"),
			wstest.Bad("not subscribed", okxTicker("ETH-USDT", "1", 1767323045000, ""), "unknown_stream"),
			wstest.Bad("not json", `{"arg":`, "bad_json"),
		},
		Unknown:      okxTicker("BTC-USDT", "50000.15", 1767323045500, `,"brandNew":{"x":[1,2]},"tsNano":"1"`),
		UnknownPrice: "50000.15",
		Ping:         "ping",
		Pong:         "pong",
		PingEvery:    PingAfter,
		Trade: func(id uint64, price string, ts int64) string {
			return fmt.Sprintf(`{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"%d","px":%q,"sz":"0.1","side":"buy","ts":"%d","count":"1"}]}`, id, price, ts)
		},
		TradeIDsContiguous: true,
		Notice:             `{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}`,
	})
}

func TestSubscribeSplitsLargeRequests(t *testing.T) {
	syms := make([]string, 2000)
	for i := range syms {
		syms[i] = fmt.Sprintf("COIN%04d-USDT", i)
	}
	msgs := source{}.Subscribe(syms)
	if len(msgs) < 2 {
		t.Fatalf("%d requests for 2000 args, want them split under 64 KB", len(msgs))
	}
	n := 0
	for _, m := range msgs {
		if len(m) > MaxRequestBytes {
			t.Errorf("request of %d bytes", len(m))
		}
		n += strings.Count(string(m), `"instId"`)
	}
	if n != 2000 {
		t.Errorf("%d args across requests, want 2000", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"bad symbol", func(c *Config) { c.Symbols = []string{"btc-usdt"} }, "symbols"},
		{"ping too slow", func(c *Config) { c.PingEvery = 30 * time.Second }, "ping_every"},
		{"too many per conn", func(c *Config) { c.StreamsPerConn = 5000 }, "streams_per_conn"},
		{"not ws", func(c *Config) { c.URL = "https://x" }, "url"},
	} {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		if (err == nil) != (tc.want == "") || err != nil && !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
