package events

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
)

// batchBus is a sinks.BatchPublisher whose round trips ack what the test
// scripts: each entry of plan is, for one call, how many leading records
// are acked and which later ones reach the topic anyway (acked after the
// first failed one, on another partition). Calls beyond plan ack all.
type batchBus struct {
	mu    sync.Mutex
	plan  []step
	calls [][]string // the IDs each PublishAll carried
	topic []string   // the IDs on the topic, in order written
	t     *testing.T
}

type step struct {
	acked int
	also  []int // indexes after acked that are written all the same
	lie   bool  // report acked with a nil error
}

var _ sinks.BatchPublisher = (*batchBus)(nil)

func (b *batchBus) Publish(context.Context, string, []byte, []byte) error {
	b.t.Error("Publish called on a batch publisher")
	return errors.New("unexpected Publish")
}

func (b *batchBus) PublishAll(_ context.Context, _ string, keys, values [][]byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := make([]string, len(values))
	for i, v := range values {
		var a alert.Alert
		if err := json.Unmarshal(v, &a); err != nil {
			b.t.Fatalf("record %d: %v", i, err)
		}
		if string(keys[i]) != a.Key() {
			b.t.Errorf("record %d: key %q, want %q", i, keys[i], a.Key())
		}
		ids[i] = a.ID
	}
	b.calls = append(b.calls, ids)
	s := step{acked: len(values)}
	if len(b.plan) > 0 {
		s, b.plan = b.plan[0], b.plan[1:]
	}
	b.topic = append(b.topic, ids[:s.acked]...)
	for _, i := range s.also {
		b.topic = append(b.topic, ids[i])
	}
	if s.acked == len(values) || s.lie {
		return s.acked, nil
	}
	return s.acked, testkit.ErrBrokerDown
}

func alerts(ids ...string) []alert.Alert {
	out := make([]alert.Alert, len(ids))
	for i, id := range ids {
		out[i] = alert.Alert{ID: id, Exchange: "binance", Symbol: "BTCUSDT" + id, Timestamp: int64(i + 1)}
	}
	return out
}

// A round trip that acks only a prefix: the prefix leaves the outbox (and
// reaches Recent and Acked) in order, the rest stays for the retry, which
// carries exactly that suffix in one round trip; an event the broker took
// after the failed one is then on the topic twice, under one ID, and a
// reader that keeps events by ID (the API's feeds) keeps it once.
func TestOutboxBatchKeepsTheUnackedSuffix(t *testing.T) {
	bus := &batchBus{t: t, plan: []step{{acked: 2, also: []int{3}}}}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errs"})
	recent := NewRecent[alert.Alert](10)
	var acked []string
	o := Outbox[alert.Alert]{
		Topic: alert.Topic, Publisher: bus, Key: (*alert.Alert).Key, Errors: errs, Recent: recent,
		Acked: func(a *alert.Alert) { acked = append(acked, a.ID) },
	}
	o.Add(alerts("a", "b", "c", "d", "e")...)
	if err := o.Flush(context.Background()); !errors.Is(err, testkit.ErrBrokerDown) {
		t.Fatalf("Flush: %v, want the broker's error", err)
	}
	if o.Len() != 3 || !reflect.DeepEqual(acked, []string{"a", "b"}) || len(recent.All()) != 2 {
		t.Fatalf("after a partly acked flush: %d queued, acked %v, recent %d", o.Len(), acked, len(recent.All()))
	}
	if err := o.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"a", "b", "c", "d", "e"}, {"c", "d", "e"}}; !reflect.DeepEqual(bus.calls, want) {
		t.Fatalf("round trips %v, want %v", bus.calls, want)
	}
	if o.Len() != 0 || !reflect.DeepEqual(acked, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("after the retry: %d queued, acked %v", o.Len(), acked)
	}
	var ids []string
	for _, a := range recent.All() {
		ids = append(ids, a.ID)
	}
	if !reflect.DeepEqual(ids, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("recent %v", ids)
	}
	if v := testkit.Metric(onlyCounter(errs), "errs"); v != 1 {
		t.Fatalf("errors counted %v", v)
	}
	// The topic holds d twice; keeping by ID, as the feeds do, gives each once.
	if want := []string{"a", "b", "d", "c", "d", "e"}; !reflect.DeepEqual(bus.topic, want) {
		t.Fatalf("topic %v, want %v", bus.topic, want)
	}
	feed := NewRecent[alert.Alert](10)
	byID := map[string]alert.Alert{}
	for _, a := range alerts("a", "b", "c", "d", "e") {
		byID[a.ID] = a
	}
	for _, id := range bus.topic {
		feed.AddByTime(byID[id], func(a *alert.Alert) int64 { return a.Timestamp }, func(a *alert.Alert) string { return a.ID })
	}
	if n := len(feed.All()); n != 5 {
		t.Fatalf("feed kept %d events, want 5", n)
	}
}

// A round trip that acks nothing keeps everything; a publisher that reports
// a short ack without an error is a failure too, not a silent loss.
func TestOutboxBatchNothingAckedAndShortAck(t *testing.T) {
	bus := &batchBus{t: t, plan: []step{{acked: 0}, {acked: 1, lie: true}}}
	var acked []string
	o := Outbox[alert.Alert]{Topic: alert.Topic, Publisher: bus, Key: (*alert.Alert).Key,
		Acked: func(a *alert.Alert) { acked = append(acked, a.ID) }}
	o.Add(alerts("a", "b", "c")...)
	if err := o.Flush(context.Background()); err == nil || o.Len() != 3 || len(acked) != 0 {
		t.Fatalf("nothing acked: err %v, %d queued, acked %v", err, o.Len(), acked)
	}
	if err := o.Flush(context.Background()); err == nil || o.Len() != 2 || !reflect.DeepEqual(acked, []string{"a"}) {
		t.Fatalf("short ack: err %v, %d queued, acked %v", err, o.Len(), acked)
	}
	if err := o.Flush(context.Background()); err != nil || o.Len() != 0 || !reflect.DeepEqual(acked, []string{"a", "b", "c"}) {
		t.Fatalf("retry: err %v, %d queued, acked %v", err, o.Len(), acked)
	}
	if len(bus.calls) != 3 {
		t.Fatalf("%d round trips, want 3", len(bus.calls))
	}
}

// More than maxRoundTrip events go in as few round trips as the bound
// allows, in order.
func TestOutboxBatchRoundTrips(t *testing.T) {
	bus := &batchBus{t: t}
	o := Outbox[alert.Alert]{Topic: alert.Topic, Publisher: bus, Key: (*alert.Alert).Key}
	n := maxRoundTrip + 10
	for i := range n {
		o.Add(alert.Alert{ID: string(rune('a'+i%26)) + string(rune('0'+i/26%10)), Exchange: "x", Symbol: "y"})
	}
	if err := o.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(bus.calls) != 2 || len(bus.calls[0]) != maxRoundTrip || len(bus.calls[1]) != 10 || len(bus.topic) != n {
		t.Fatalf("round trips of %d and %d, %d on the topic", len(bus.calls[0]), len(bus.calls[len(bus.calls)-1]), len(bus.topic))
	}
}
