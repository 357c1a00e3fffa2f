package bus

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// EnsureTopic never changes an existing topic; GrowTopic adds partitions
// (and asked for fewer changes nothing). Pairs then hash elsewhere: a pair's ticks
// from before and after sit in two partitions, and a group consuming both
// gets every tick exactly once, in order on each side of the change.
func TestEnsureTopicAddsPartitions(t *testing.T) {
	emb, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	cc := ClientConfig{Brokers: emb.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	count := func() int {
		t.Helper()
		// A fresh client each time: a client caches metadata for seconds.
		a, done, err := admin(cc)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		n, err := partitionCount(ctx, a, topic)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	if err := EnsureTopic(ctx, cc, topic, 4, -1); err != nil {
		t.Fatal(err)
	}
	before := produceFrom(t, cc, 16, 20, 0)
	if err := EnsureTopic(ctx, cc, topic, 8, -1); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("EnsureTopic changed an existing topic to %d partitions", n)
	}
	if err := GrowTopic(ctx, cc, topic, 8); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 8 {
		t.Fatalf("%d partitions after raising to 8", n)
	}
	if err := GrowTopic(ctx, cc, topic, 4); err != nil {
		t.Fatalf("lowering: %v", err)
	}
	if n := count(); n != 8 {
		t.Fatalf("%d partitions after asking for 4 again, want 8 kept", n)
	}
	after := produceFrom(t, cc, 16, 20, 1000) // each pair's event times rise across the change

	// Some pairs moved: their records are in two partitions now.
	rd, err := kgo.NewClient(kgo.SeedBrokers(cc.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	parts := map[string]map[int32]bool{}
	for n := 0; n < len(before)+len(after); {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records", n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if parts[string(r.Key)] == nil {
				parts[string(r.Key)] = map[int32]bool{}
			}
			parts[string(r.Key)][r.Partition] = true
			n++
		})
	}
	moved := 0
	for _, ps := range parts {
		if len(ps) == 2 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("no pair changed partition: %v", parts)
	}
	t.Logf("%d of 16 pairs moved to a new partition", moved)

	// A group reads both sides: every tick once; per pair, the ticks of
	// each side in order.
	s := newRecSink(0)
	r := runSink(t, cc, "grow", s, sinks.BatchPolicy{Size: 100, MaxWait: 10 * time.Millisecond}, nil, nil)
	s.waitFor(t, len(before)+len(after))
	r.stop(t)
	got := map[string][]tick.Tick{}
	for _, tk := range s.got {
		k := tk.Pair().String()
		got[k] = append(got[k], tk)
	}
	want := map[string][]tick.Tick{}
	for _, tk := range after {
		want[tk.Pair().String()] = append(want[tk.Pair().String()], tk)
	}
	for k, ts := range got {
		if len(ts) != 40 {
			t.Errorf("%s: %d ticks, want 40", k, len(ts))
			continue
		}
		var old, new []int64
		for _, tk := range ts {
			if tk.Timestamp < want[k][0].Timestamp {
				old = append(old, tk.Timestamp)
			} else {
				new = append(new, tk.Timestamp)
			}
		}
		if len(old) != 20 || len(new) != 20 || !sort.SliceIsSorted(old, func(i, j int) bool { return old[i] < old[j] }) ||
			!sort.SliceIsSorted(new, func(i, j int) bool { return new[i] < new[j] }) {
			t.Errorf("%s: before %v, after %v: want 20 each, each side in order", k, old, new)
		}
	}
	if len(got) != 16 {
		t.Errorf("%d pairs consumed, want 16", len(got))
	}
}

// produceFrom is produce with sequence numbers from first on.
func produceFrom(t *testing.T, cc ClientConfig, pairs, n, first int) []tick.Tick {
	t.Helper()
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent []tick.Tick
	for i := first; i < first+n; i++ {
		for pr := 0; pr < pairs; pr++ {
			tk := mkTick(pr, i)
			if err := p.Produce(ctx, &tk); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, tk)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return sent
}
