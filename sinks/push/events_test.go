package push

import (
	"testing"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
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
