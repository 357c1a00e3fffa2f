package push

import (
	"fmt"
	"testing"

	"github.com/coder/websocket"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// Alerts and signals come from their topics: a record's value reaches the
// subscribers of its channel as {"type":channel,"key":key,"data":value},
// the frame risk and strategy used to hand push directly; a record that is
// not JSON is counted and skipped, and the channel carries on.
func TestEventsFromTopics(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	c := dial(t, ts, "")
	subscribe(t, c, `{"type":"subscribe","channels":["alert","signal"],"symbols":["BTCUSDT"]}`)

	ts.raise(t, alert.Topic, "binance:BTCUSDT", []byte(`{not json`))
	ts.raise(t, alert.Topic, "binance:ETHUSDT", []byte(`{"id":"other-pair"}`))
	ts.raise(t, alert.Topic, "binance:BTCUSDT", []byte(`{"id":"a1","rule":"price_volatility"}`))
	ts.raise(t, signal.Topic, "binance:BTCUSDT", []byte(`{"id":"s1","side":"buy"}`))
	send(t, c, `{"type":"ping"}`)
	var got []string
	for {
		f := read(t, c)
		if f.Type == "pong" {
			break
		}
		got = append(got, f.Type+" "+f.Key+" "+string(f.Data))
	}
	want := []string{`alert binance:BTCUSDT {"id":"a1","rule":"price_volatility"}`, `signal binance:BTCUSDT {"id":"s1","side":"buy"}`}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("frames %q, want %q", got, want)
	}
	if n := testkit.Metric(ts.reg, "tickflow_push_events_undecodable_total", "channel", "alert"); n != 1 {
		t.Fatalf("undecodable alerts counted %v, want 1", n)
	}
	if n := testkit.Metric(ts.reg, "tickflow_push_events_total", "channel", "alert"); n != 2 {
		t.Fatalf("alerts counted %v, want 2", n)
	}
}

// Trades and quotes come from market_data.trades and market_data.quotes,
// followed like alerts, on the "trade" and "quote" channels with the same
// filters; a client that names no channels does not get them.
func TestTradesAndQuotesFromTopics(t *testing.T) {
	ts := startSink(t, func(*Config) {})
	named := dial(t, ts, "")
	subscribe(t, named, `{"type":"subscribe","channels":["trade","quote"],"exchanges":["okx"],"symbols":["btc-usdt"]}`)
	tradesOnly := dial(t, ts, "")
	subscribe(t, tradesOnly, `{"type":"subscribe","channels":["trade"]}`)
	everything := dial(t, ts, "")
	subscribe(t, everything, `{"type":"subscribe"}`)

	trade := func(sym, id string) []byte {
		tr := tick.Trade{Exchange: "okx", Symbol: sym, Base: "BTC", Quote: "USDT", Price: tick.MustDecimal("50100.10"),
			Size: tick.MustDecimal("0.002"), Side: tick.Buy, TradeID: id, Timestamp: 1_700_000_000_000}
		return tr.AppendJSON(nil)
	}
	q := tick.Quote{Exchange: "okx", Symbol: "BTC-USDT", Bid: tick.MustDecimal("50100"), BidSize: tick.MustDecimal("1"),
		Ask: tick.MustDecimal("50100.2"), AskSize: tick.MustDecimal("2"), Timestamp: 1_700_000_000_001}
	quote, err := tick.MarshalQuote(&q)
	if err != nil {
		t.Fatal(err)
	}
	ts.raise(t, ingest.TradeTopic, "okx:BTC-USDT", []byte(`not json`))
	ts.raise(t, ingest.TradeTopic, "okx:ETH-USDT", trade("ETH-USDT", "t0"))
	ts.raise(t, ingest.TradeTopic, "okx:BTC-USDT", trade("BTC-USDT", "t1"))
	ts.raise(t, tick.QuoteTopic, "okx:BTC-USDT", quote)

	tests := []struct {
		name string
		c    interface{ frames() []string }
		want []string
	}{
		{"named, filtered to okx:BTC-USDT", clientFrames{t, named}, []string{
			"trade okx:BTC-USDT " + string(trade("BTC-USDT", "t1")), "quote okx:BTC-USDT " + string(quote)}},
		{"trades, every pair", clientFrames{t, tradesOnly}, []string{
			"trade okx:ETH-USDT " + string(trade("ETH-USDT", "t0")), "trade okx:BTC-USDT " + string(trade("BTC-USDT", "t1"))}},
		{"no channels named: neither", clientFrames{t, everything}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.frames(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("frames\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	if n := testkit.Metric(ts.reg, "tickflow_push_events_undecodable_total", "channel", "trade"); n != 1 {
		t.Errorf("undecodable trades counted %v, want 1", n)
	}
	if n := testkit.Metric(ts.reg, "tickflow_push_events_total", "channel", "quote"); n != 1 {
		t.Errorf("quotes counted %v, want 1", n)
	}
}

// clientFrames reads a client's frames up to the pong answering a ping.
type clientFrames struct {
	t *testing.T
	c *websocket.Conn
}

func (cf clientFrames) frames() []string {
	send(cf.t, cf.c, `{"type":"ping"}`)
	var got []string
	for {
		f := read(cf.t, cf.c)
		if f.Type == "pong" {
			return got
		}
		got = append(got, f.Type+" "+f.Key+" "+string(f.Data))
	}
}
