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
	"github.com/tickflow/tickflow/tick"
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

type harness struct {
	t    *testing.T
	sink *Sink
	bus  *testkit.Publisher
	reg  *prometheus.Registry
}

// signals decodes what the engine published, in order.
func (h *harness) signals() []signal.Signal {
	return testkit.Values[signal.Signal](h.t, h.bus, signal.Topic)
}

// newHarness builds a connected engine with its pool running until the
// test ends.
func newHarness(t *testing.T, cfg *Config, clk clock.Clock) *harness {
	t.Helper()
	h := &harness{t: t, bus: &testkit.Publisher{}, reg: prometheus.NewRegistry()}
	s, err := New(sinks.Env{Name: "strategy", Metrics: h.reg, Publisher: h.bus, Clock: clk}, cfg)
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

const t0 = int64(1_700_000_000_000)

func tk(exchange, symbol string, at time.Duration, price string) tick.Tick {
	return tick.Tick{Exchange: exchange, Symbol: symbol, Timestamp: t0 + at.Milliseconds(), Price: tick.MustDecimal(price)}
}

func path(exchange, symbol string, step time.Duration, prices ...string) []tick.Tick {
	out := make([]tick.Tick, len(prices))
	for i, p := range prices {
		out[i] = tk(exchange, symbol, time.Duration(i)*step, p)
	}
	return out
}

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
