// Package testkit holds the helpers tickflow's tests share: polling a real
// condition until a deadline, reading one series from a metrics registry,
// a publisher that records what a sink sent to the bus, and a follower that
// feeds a reader the records a test sends. It is imported by tests only.
package testkit

import (
	"context"
	"encoding/json"
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

// Values decodes the JSON value of every record p accepted for topic, in
// order, failing the test on one that does not decode.
func Values[T any](t testing.TB, p *Publisher, topic string) []T {
	t.Helper()
	var out []T
	for _, r := range p.Records() {
		if r.Topic != topic {
			continue
		}
		var v T
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatalf("record on %s: %v: %s", topic, err, r.Value)
		}
		out = append(out, v)
	}
	return out
}

// Follower stands in for the bus's group-less reader (sinks.Follower):
// Send delivers a record to every Follow of its topic running at the time
// and keeps it for the backfill of later ones. Following says how many
// Follow calls are running, so a test sends only once its reader listens.
// FailNext makes that many of the next Follow calls fail at once.
type Follower struct {
	mu       sync.Mutex
	log      map[string][]Record
	subs     map[string]map[chan Record]struct{}
	failNext int
}

// ErrFollowFailed is what a Follower's Follow returns while failing.
var ErrFollowFailed = errors.New("follow failed")

// Follow delivers the last backfill records sent to topic, then every
// record sent until ctx ends; then it returns nil.
func (f *Follower) Follow(ctx context.Context, topic string, backfill int, fn func(key, value []byte)) error {
	ch := make(chan Record, 1024)
	f.mu.Lock()
	if f.failNext > 0 {
		f.failNext--
		f.mu.Unlock()
		return ErrFollowFailed
	}
	if f.subs == nil {
		f.subs = map[string]map[chan Record]struct{}{}
	}
	if f.subs[topic] == nil {
		f.subs[topic] = map[chan Record]struct{}{}
	}
	f.subs[topic][ch] = struct{}{}
	old := f.log[topic]
	old = append([]Record(nil), old[max(0, len(old)-backfill):]...)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs[topic], ch)
		f.mu.Unlock()
	}()
	for _, r := range old {
		fn([]byte(r.Key), r.Value)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-ch:
			fn([]byte(r.Key), r.Value)
		}
	}
}

// Send delivers a record to topic's followers (blocking while one has
// 1024 records queued) and keeps it for later backfills.
func (f *Follower) Send(topic, key string, value []byte) {
	r := Record{Topic: topic, Key: key, Value: append([]byte(nil), value...)}
	f.mu.Lock()
	if f.log == nil {
		f.log = map[string][]Record{}
	}
	f.log[topic] = append(f.log[topic], r)
	subs := make([]chan Record, 0, len(f.subs[topic]))
	for ch := range f.subs[topic] {
		subs = append(subs, ch)
	}
	f.mu.Unlock()
	for _, ch := range subs {
		ch <- r
	}
}

// Following is how many Follow calls of topic are running.
func (f *Follower) Following(topic string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs[topic])
}

// FailNext makes the next n Follow calls return ErrFollowFailed.
func (f *Follower) FailNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}
