package bybit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/wstest"
)

// The documented spot snapshot (shared/exchange-samples/bybit.jsonl), with
// the test's price and time.
func bybitTicker(sym, last string, ts int64, extra string) string {
	return fmt.Sprintf(`{"topic":"tickers.%s","ts":%d,"type":"snapshot","cs":496622841,"data":{"symbol":%q,"lastPrice":%q,"highPrice24h":"16566.64","lowPrice24h":"16009.19","prevPrice24h":"16443.66","volume24h":"5865.470182","turnover24h":"95949815.680875","price24hPcnt":"-0.0049"%s}}`,
		sym, ts, sym, last, extra)
}

func TestSource(t *testing.T) {
	wstest.RunSourceSuite(t, wstest.Source{
		Exchange: Exchange,
		Symbol:   "BTCUSDT",
		Start: func(t *testing.T, url string, env wstest.SourceEnv) {
			c := DefaultConfig()
			c.URL, c.Symbols, c.StaleAfter, c.BackoffMin = url, []string{"BTCUSDT"}, time.Hour, time.Second
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
			return []string{`{"success":true,"ret_msg":"subscribe","conn_id":"2324d924-aa4d-45b0-a858-7b8be29ab52b","req_id":"sub0","op":"subscribe"}`}
		},
		SubscribeError: func(string) string {
			return `{"success":false,"ret_msg":"error:Invalid topic","conn_id":"2324d924","req_id":"sub0","op":"subscribe"}`
		},
		Data: func(price string, ts int64) string { return bybitTicker("BTCUSDT", price, ts, "") },
		Bad: []wstest.BadFrame{
			wstest.Bad("missing lastPrice", `{"topic":"tickers.BTCUSDT","ts":1767323045000,"type":"snapshot","data":{"symbol":"BTCUSDT"}}`, "missing_field"),
			wstest.Bad("empty lastPrice", bybitTicker("BTCUSDT", "", 1767323045000, ""), "bad_field"),
			wstest.Bad("not subscribed", bybitTicker("ETHUSDT", "1", 1767323045000, ""), "unknown_stream"),
			wstest.Bad("not json", `{"topic":`, "bad_json"),
		},
		Unknown:      bybitTicker("BTCUSDT", "50000.15", 1767323045500, `,"usdIndexPrice":"50000.1","brandNew":[1]`),
		UnknownPrice: "50000.15",
		Ping:         `{"op":"ping"}`,
		Pong:         `{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}`,
		PingEvery:    PingInterval,
		Trade: func(id uint64, price string, ts int64) string {
			return fmt.Sprintf(`{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":%d,"data":[{"i":"2290000000%d","T":%d,"p":%q,"v":"0.001","S":"Buy","s":"BTCUSDT","BT":false}]}`, ts, id, ts, price)
		},
	})
}

func TestSubscribeTenPerRequest(t *testing.T) {
	syms := make([]string, 25)
	for i := range syms {
		syms[i] = fmt.Sprintf("COIN%dUSDT", i)
	}
	msgs := source{}.Subscribe(syms)
	if len(msgs) != 3 {
		t.Fatalf("%d requests for 25 topics, want 3", len(msgs))
	}
	for i, m := range msgs {
		if n := strings.Count(string(m), "tickers."); n > MaxArgsPerRequest {
			t.Errorf("request %d has %d args", i, n)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.PingEvery = 21 * time.Second
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "ping_every") {
		t.Errorf("ping every 21s: %v", err)
	}
	c = DefaultConfig()
	c.Symbols = []string{"BTC-USDT"}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "symbols") {
		t.Errorf("BTC-USDT: %v", err)
	}
}
