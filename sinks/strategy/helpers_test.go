package strategy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/sinks"
)

// parseConfig decodes a sinks.strategy section the way the config loader
// does, over the defaults.
func parseConfig(t *testing.T, src string) *Config {
	t.Helper()
	c := DefaultConfig()
	dec := yaml.NewDecoder(stringsReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		t.Fatalf("decode config: %v", err)
	}
	return c
}

// harness is a connected engine with a recording bus.
type harness struct{ *testkit.Harness[*Sink] }

// signals decodes what the engine published, in order.
func (h *harness) signals() []signal.Signal {
	return testkit.Values[signal.Signal](h.T, h.Bus, signal.Topic)
}

// newHarness builds a connected engine with its pool running until the
// test ends.
func newHarness(t *testing.T, cfg *Config, clk clock.Clock) *harness {
	t.Helper()
	h := &harness{testkit.NewHarness[*Sink](t)}
	s, err := New(sinks.Env{Name: "strategy", Metrics: h.Reg, Publisher: h.Bus, Clock: clk}, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	testkit.Eventually(t, 10*time.Second, "the pool to start", s.pool.running.Load)
	h.Connect(s)
	return h
}

// t0, tk and path: ticks at offsets from an arbitrary event time.
const t0 = testkit.T0

var (
	tk   = testkit.TickAt
	path = testkit.Path
)

// sig is the comparable part of a signal.
type sig struct {
	name  string
	side  signal.Side
	price string
	at    int64
}

func sigs(ss []signal.Signal) []sig {
	out := []sig{}
	for _, s := range ss {
		out = append(out, sig{s.Strategy, s.Side, s.Price, s.Timestamp - t0})
	}
	return out
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

func indent(s, prefix string) string {
	lines := strings.Split(strings.Trim(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func senv() sinks.Env {
	return sinks.Env{Name: "strategy", Metrics: prometheus.NewRegistry(), Publisher: &testkit.Publisher{}}
}
