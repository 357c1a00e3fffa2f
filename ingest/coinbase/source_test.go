package coinbase

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/wstest"
)

// The documented Advanced Trade ticker (shared/exchange-samples/
// coinbase.jsonl), with the test's price and time.
func advTicker(product, price string, ts int64, extra string) string {
	return fmt.Sprintf(`{"channel":"ticker","client_id":"","timestamp":%q,"sequence_num":0,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":%q,"price":%q,"volume_24_h":"16038.28770938","low_24_h":"21835.29","high_24_h":"23011.18","low_52_w":"15460","high_52_w":"48240","price_percent_chg_24_h":"-4.15775596190603","best_bid":"21931.98","best_bid_quantity":"8000.21","best_ask":"21933.98","best_ask_quantity":"8038.07770938"%s}]}]}`,
		time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), product, price, extra)
}

func TestSource(t *testing.T) {
	wstest.RunSourceSuite(t, wstest.Source{
		Exchange: Exchange,
		Symbol:   "BTC-USD",
		Start: func(t *testing.T, url string, env wstest.SourceEnv) {
			c := DefaultConfig()
			c.URL, c.Symbols, c.StaleAfter, c.BackoffMin = url, []string{"BTC-USD"}, time.Hour, time.Second
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
		IsSubscribe: func(m string) bool { return strings.Contains(m, `"channel":"ticker"`) },
		Acks: func(string) []string {
			return []string{`{"channel":"subscriptions","client_id":"","timestamp":"2023-02-09T20:32:37.167359596Z","sequence_num":1,"events":[{"subscriptions":{"ticker":["BTC-USD"]}}]}`}
		},
		SubscribeError: func(string) string {
			return `{"type":"error","message":"Failed to subscribe","reason":"BTC-USD is delisted"}`
		},
		Data: func(price string, ts int64) string { return advTicker("BTC-USD", price, ts, "") },
		Bad: []wstest.BadFrame{
			wstest.Bad("missing price", `{"channel":"ticker","timestamp":"2023-02-09T20:30:37.167359596Z","sequence_num":2,"events":[{"type":"update","tickers":[{"type":"ticker","product_id":"BTC-USD"}]}]}`, "missing_field"),
			wstest.Bad("empty price", advTicker("BTC-USD", "", 1767323045000, ""), "bad_field"),
			wstest.Bad("not subscribed", advTicker("ETH-USD", "1", 1767323045000, ""), "unknown_stream"),
			wstest.Bad("not json", `{"channel":`, "bad_json"),
		},
		Unknown:       advTicker("BTC-USD", "50000.15", 1767323045500, `,"brand_new":{"x":1}`),
		UnknownPrice:  "50000.15",
		WantSubscribe: []string{`"channel":"heartbeats"`},
	})
}

func TestExchangeFormatSubscribe(t *testing.T) {
	msgs := source{exchange: true}.Subscribe([]string{"BTC-USD", "ETH-USD"})
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), `"channels":["ticker","heartbeat"]`) {
		t.Fatalf("Exchange subscribe: %s", msgs)
	}
	msgs = source{exchange: true, trades: true}.Subscribe([]string{"BTC-USD"})
	if len(msgs) != 1 || !strings.Contains(string(msgs[0]), `"channels":["ticker","heartbeat","matches"]`) {
		t.Fatalf("Exchange subscribe with trades: %s", msgs)
	}
	c := DefaultConfig()
	c.Trades = true
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "trades") {
		t.Errorf("trades on Advanced Trade: %v", err)
	}
	c.Format, c.URL = FormatExchange, ExchangeURL
	if err := c.Validate(); err != nil {
		t.Errorf("trades on Exchange: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.PingEvery = time.Second
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "ping_every") {
		t.Errorf("ping_every on coinbase: %v", err)
	}
	c = DefaultConfig()
	c.Format = "pro"
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "format") {
		t.Errorf("format pro: %v", err)
	}
}
