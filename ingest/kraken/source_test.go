package kraken

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/wstest"
)

// The documented ticker (shared/exchange-samples/kraken.jsonl): numbers
// are JSON numbers; last is given as literal JSON text.
func krakenTicker(sym, last string, ts int64, extra string) string {
	return fmt.Sprintf(`{"channel":"ticker","type":"update","data":[{"symbol":%q,"bid":0.10025,"bid_qty":740.0,"ask":0.10036,"ask_qty":1361.44813783,"last":%s,"volume":997038.98383185,"vwap":0.10148,"low":0.09979,"high":0.10285,"change":-0.00017,"change_pct":-0.17,"timestamp":%q%s}]}`,
		sym, last, time.UnixMilli(ts).UTC().Format("2006-01-02T15:04:05.000000Z"), extra)
}

func TestSource(t *testing.T) {
	wstest.RunSourceSuite(t, wstest.Source{
		Exchange: Exchange,
		Symbol:   "BTC/USD",
		Start: func(t *testing.T, url string, env wstest.SourceEnv) {
			c := DefaultConfig()
			c.URL, c.Symbols, c.StaleAfter, c.BackoffMin = url, []string{"BTC/USD"}, time.Hour, time.Second
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
		IsSubscribe: func(m string) bool { return strings.Contains(m, `"method":"subscribe"`) },
		Acks: func(string) []string {
			return []string{`{"method":"subscribe","req_id":1,"result":{"channel":"ticker","snapshot":true,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}`}
		},
		SubscribeError: func(string) string {
			return `{"error":"Currency pair not supported BTC/USD","method":"subscribe","req_id":1,"success":false,"symbol":"BTC/USD","time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}`
		},
		Data: func(price string, ts int64) string { return krakenTicker("BTC/USD", price, ts, "") },
		Bad: []wstest.BadFrame{
			wstest.Bad("missing last", `{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","timestamp":"2026-01-02T03:04:05.000000Z"}]}`, "missing_field"),
			wstest.Bad("empty string last", krakenTicker("BTC/USD", `""`, 1767323045000, ""), "bad_field"),
			wstest.Bad("not subscribed", krakenTicker("ETH/USD", "1", 1767323045000, ""), "unknown_stream"),
			wstest.Bad("not json", `{"channel":`, "bad_json"),
		},
		Unknown:       krakenTicker("BTC/USD", "50000.15", 1767323045500, `,"brand_new":{"x":1}`),
		UnknownPrice:  "50000.15",
		WantSubscribe: []string{`"channel":"ticker"`},
		Ping:          `{"method":"ping"}`,
		Pong:          `{"method":"pong","time_in":"2023-09-25T09:05:00.123456Z","time_out":"2023-09-25T09:05:00.123500Z"}`,
		PingEvery:     30 * time.Second,
		Trade: func(id uint64, price string, ts int64) string {
			return fmt.Sprintf(`{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell","price":%s,"qty":0.5,"ord_type":"market","trade_id":%d,"timestamp":%q}]}`,
				price, id, time.UnixMilli(ts).UTC().Format("2006-01-02T15:04:05.000000Z"))
		},
		TradeIDsContiguous: true,
		Notice:             `{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"maintenance","version":"2.0.0"}]}`,
	})
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Symbols = []string{"XBTUSD"}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "symbols") {
		t.Errorf("XBTUSD: %v", err)
	}
}
