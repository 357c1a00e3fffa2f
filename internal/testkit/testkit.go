// Package testkit holds the helpers tickflow's tests share: polling a real
// condition until a deadline, reading one series from a metrics registry,
// and a publisher that records what a sink sent to the bus. It is imported
// by tests only.
package testkit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Eventually polls cond until it holds, failing the test after d. It waits
// for a condition another goroutine or process makes true; it is not a
// stand-in for synchronisation the test could do directly.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
}

// Metric sums the counter and gauge values of every series called name
// whose labels include each given name/value pair. A missing series is 0;
// a registry that fails to gather is -1, which no assertion expects.
func Metric(g prometheus.Gatherer, name string, labels ...string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return -1
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
						break
					}
				}
				if !found {
					continue series
				}
			}
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// Record is one message a Publisher accepted.
type Record struct {
	Topic string
	Key   string
	Value []byte
}

// ErrBrokerDown is what a Publisher returns while failing.
var ErrBrokerDown = errors.New("broker unavailable")

// Publisher stands in for the bus producer (sinks.Publisher): it keeps
// every record it accepts, in order. FailNext makes that many of the next
// publishes fail with ErrBrokerDown.
type Publisher struct {
	mu       sync.Mutex
	records  []Record
	failNext int
}

// Publish records the message, or fails while FailNext is counting down.
func (p *Publisher) Publish(_ context.Context, topic string, key, value []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failNext > 0 {
		p.failNext--
		return ErrBrokerDown
	}
	p.records = append(p.records, Record{Topic: topic, Key: string(key), Value: append([]byte(nil), value...)})
	return nil
}

// FailNext makes the next n publishes fail.
func (p *Publisher) FailNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = n
}

// Records returns a copy of what was accepted so far.
func (p *Publisher) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}
