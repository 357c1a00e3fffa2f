package risk

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

type harness struct {
	t    *testing.T
	sink *Sink
	bus  *testkit.Publisher
	reg  *prometheus.Registry
}

// alerts decodes what the monitor published, in order.
func (h *harness) alerts() []alert.Alert {
	return testkit.Values[alert.Alert](h.t, h.bus, alert.Topic)
}

func newHarness(t *testing.T, cfg *Config) *harness {
	t.Helper()
	h := &harness{t: t, bus: &testkit.Publisher{}, reg: prometheus.NewRegistry()}
	s, err := New(sinks.Env{Name: "risk", Metrics: h.reg, Publisher: h.bus}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Connect(context.Background()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	h.sink = s
	return h
}

func (h *harness) write(ticks ...tick.Tick) { h.t.Helper(); testkit.Write(h.t, h.sink, ticks...) }

func (h *harness) counter(name string, labels ...string) float64 {
	return testkit.Metric(h.reg, name, labels...)
}

// onlyRules is the default config with just the named rules enabled.
func onlyRules(rules ...string) *Config {
	c := DefaultConfig()
	c.Volatility.Enabled, c.StaleFeed.Enabled, c.CrossedBook.Enabled, c.PriceSpike.Enabled = false, false, false, false
	for _, r := range rules {
		switch r {
		case alert.PriceVolatility:
			c.Volatility.Enabled = true
		case alert.StaleFeed:
			c.StaleFeed.Enabled = true
		case alert.CrossedBook:
			c.CrossedBook.Enabled = true
		case alert.PriceSpike:
			c.PriceSpike.Enabled = true
		}
	}
	return c
}

// t0 is an arbitrary event time (ms).
const t0 = int64(1_700_000_000_000)

func tk(exchange, symbol string, at time.Duration, price string) tick.Tick {
	return tick.Tick{Exchange: exchange, Symbol: symbol, Timestamp: t0 + at.Milliseconds(), Price: tick.MustDecimal(price)}
}

func book(t tick.Tick, bid, ask string) tick.Tick {
	t.Bid, t.Ask = tick.MustDecimal(bid), tick.MustDecimal(ask)
	return t
}

// path is one pair's prices at the given offsets from t0.
func path(exchange, symbol string, step time.Duration, prices ...string) []tick.Tick {
	out := make([]tick.Tick, len(prices))
	for i, p := range prices {
		out[i] = tk(exchange, symbol, time.Duration(i)*step, p)
	}
	return out
}

func firing(as []alert.Alert) []alert.Alert {
	var out []alert.Alert
	for _, a := range as {
		if a.Status == alert.Firing {
			out = append(out, a)
		}
	}
	return out
}

func ids(as []alert.Alert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.DedupKey()
	}
	return out
}
