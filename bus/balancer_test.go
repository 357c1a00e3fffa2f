package bus

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// assigned returns, per member client ID, how many partitions it owns in
// group (members that own none are listed with 0).
func assigned(t *testing.T, adm *kadm.Client, group string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ds, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, m := range ds[group].Members {
		n := 0
		if c, ok := m.Assigned.AsConsumer(); ok {
			for _, tp := range c.Topics {
				n += len(tp.Partitions)
			}
		}
		out[m.ClientID] = n
	}
	return out
}

// In an exclusive group one member owns every partition and the other
// stands by; when the owner leaves, the standby takes them all over from
// the group's commit, so between them the sinks see every tick once.
func TestExclusiveGroupGivesEveryPartitionToOneMember(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	cl, err := kgo.NewClient(kgo.SeedBrokers(cc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	start := func(id string, s sinks.Sink) running {
		c := cc
		c.ClientID = id
		rt, err := NewRuntime(RuntimeConfig{
			Client: c, Topic: topic, Group: "ex", Exclusive: true, Name: id, Sink: s,
			Batch: sinks.BatchPolicy{Size: 100, MaxWait: 10 * time.Millisecond}, SessionTimeout: 6 * time.Second,
			Metrics: NewRuntimeMetrics(prometheus.NewRegistry()),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rt.Run(ctx) }()
		return running{cancel, done}
	}
	a, b := newRecSink(0), newRecSink(0)
	ra := start("a", a)
	rb := start("b", b)
	defer func() { rb.stop(t) }() // rb is the survivor by then
	var owner string
	testkit.Eventually(t, 30*time.Second, "one member owning all 8 partitions, the other none", func() bool {
		m := assigned(t, adm, "ex")
		switch {
		case len(m) == 2 && m["a"] == 8 && m["b"] == 0:
			owner = "a"
		case len(m) == 2 && m["b"] == 8 && m["a"] == 0:
			owner = "b"
		}
		return owner != ""
	})
	sent := produce(t, cc, 4, 50)
	first, standby := a, b
	if owner == "b" {
		first, standby = b, a
	}
	first.waitFor(t, len(sent))
	if standby.count() != 0 {
		t.Fatalf("the standby wrote %d ticks", standby.count())
	}

	// The owner leaves (a clean stop, so it commits what it wrote); the
	// standby owns everything and carries on from that commit.
	if owner == "a" {
		ra.stop(t)
	} else {
		rb.stop(t)
		rb = ra
	}
	more := produce(t, cc, 4, 50)
	standby.waitFor(t, len(more))
	testkit.Eventually(t, 30*time.Second, "the standby owning all 8", func() bool {
		m := assigned(t, adm, "ex")
		return len(m) == 1 && m[map[string]string{"a": "b", "b": "a"}[owner]] == 8
	})
	var got []tick.Tick
	first.mu.Lock()
	got = append(got, first.got...)
	first.mu.Unlock()
	standby.mu.Lock()
	got = append(got, standby.got...)
	standby.mu.Unlock()
	checkExactlyOnceInOrder(t, append(sent, more...), got)
}
