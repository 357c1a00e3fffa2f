package risk

import (
	"testing"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// harness is a connected monitor with a recording bus.
type harness struct{ *testkit.Harness[*Sink] }

// alerts decodes what the monitor published, in order.
func (h *harness) alerts() []alert.Alert {
	return testkit.Values[alert.Alert](h.T, h.Bus, alert.Topic)
}

func newHarness(t *testing.T, cfg *Config) *harness {
	t.Helper()
	h := &harness{testkit.NewHarness[*Sink](t)}
	s, err := New(sinks.Env{Name: "risk", Metrics: h.Reg, Publisher: h.Bus}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.Connect(s)
	return h
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

// t0, tk and path: ticks at offsets from an arbitrary event time.
const t0 = testkit.T0

var (
	tk   = testkit.TickAt
	path = testkit.Path
)

func book(t tick.Tick, bid, ask string) tick.Tick {
	t.Bid, t.Ask = tick.MustDecimal(bid), tick.MustDecimal(ask)
	return t
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
