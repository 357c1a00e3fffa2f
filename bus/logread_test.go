package bus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// posSink is a recSink that wants positions: it records its assignments
// and each tick's partition and offset.
type posSink struct {
	*recSink
	mu       sync.Mutex
	assigned []sinks.Assignment
	pos      []sinks.Position
}

func (s *posSink) Assigned(a sinks.Assignment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.assigned = append(s.assigned, a)
}

func (s *posSink) WriteBatchAt(ctx context.Context, b []tick.Tick, pos []sinks.Position) error {
	if len(pos) != len(b) {
		panic("positions and ticks differ in length")
	}
	s.mu.Lock()
	s.pos = append(s.pos, pos...)
	s.mu.Unlock()
	return s.WriteBatch(ctx, b)
}

// A sinks.PositionWriter gets every tick's partition and offset (each
// partition's offsets contiguous from where it resumed) and, before them,
// an assignment naming the topic's ID and where each partition resumes:
// the log's start the first time, the group's commit after a restart.
func TestRuntimeHandsPositions(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	sent := produce(t, cc, 6, 50)
	f := Follower{Client: cc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, start, end, err := f.Bounds(ctx, topic)
	if err != nil || id == "" || len(end) != 8 {
		t.Fatalf("Bounds: id %q, end %v, err %v", id, end, err)
	}
	s := &posSink{recSink: newRecSink(0)}
	r := runSink(t, cc, "tickflow.pos", s, sinks.BatchPolicy{Size: 64, MaxWait: time.Millisecond}, nil, nil)
	s.waitFor(t, len(sent))
	r.stop(t)
	s.mu.Lock()
	if len(s.assigned) != 1 || s.assigned[0].TopicID != id || s.assigned[0].Topic != topic || len(s.assigned[0].Next) != 8 {
		t.Fatalf("assignments %+v, want one of topic %s (%s) with 8 partitions", s.assigned, topic, id)
	}
	for p, n := range s.assigned[0].Next {
		if n != start[p] {
			t.Errorf("partition %d resumes at %d, want the log start %d", p, n, start[p])
		}
	}
	next := map[int32]int64{}
	for k, v := range start {
		next[k] = v
	}
	for i, p := range s.pos {
		if p.Offset != next[p.Partition] {
			t.Fatalf("tick %d at %d/%d, want offset %d", i, p.Partition, p.Offset, next[p.Partition])
		}
		next[p.Partition]++
	}
	s.mu.Unlock()
	for p, e := range end {
		if next[p] != e {
			t.Errorf("partition %d: positions up to %d, want the log end %d", p, next[p], e)
		}
	}

	// Restarted in the same group: resumes at the commit, the log's end.
	s2 := &posSink{recSink: newRecSink(0)}
	r2 := runSink(t, cc, "tickflow.pos", s2, sinks.BatchPolicy{Size: 64, MaxWait: time.Millisecond}, nil, nil)
	testkit.Eventually(t, 10*time.Second, "the restarted runtime's assignment", func() bool {
		s2.mu.Lock()
		defer s2.mu.Unlock()
		return len(s2.assigned) > 0
	})
	r2.stop(t)
	s2.mu.Lock()
	defer s2.mu.Unlock()
	if len(s2.assigned) != 1 {
		t.Fatalf("after restart: assignments %+v, want one", s2.assigned)
	}
	for p, n := range s2.assigned[0].Next {
		if n != end[p] {
			t.Errorf("after restart partition %d resumes at %d, want the commit %d", p, n, end[p])
		}
	}
}

// ReadRange reads exactly the records in [from, to) of each partition, in
// offset order; an empty range reads nothing.
func TestReadRange(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	produce(t, cc, 6, 50)
	f := Follower{Client: cc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, end, err := f.Bounds(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	from := map[int32]int64{}
	want := 0
	for p, e := range end {
		from[p] = e / 2
		want += int(e - e/2)
	}
	last := map[int32]int64{}
	got := 0
	err = f.ReadRange(ctx, topic, from, end, func(p int32, off int64, key, value []byte) error {
		if off < from[p] || off >= end[p] {
			t.Errorf("partition %d: offset %d outside [%d, %d)", p, off, from[p], end[p])
		}
		if l, ok := last[p]; ok && off != l+1 {
			t.Errorf("partition %d: offset %d after %d", p, off, l)
		}
		last[p] = off
		var tk tick.Tick
		if err := tick.Unmarshal(value, &tk); err != nil || tk.Key() != string(key) {
			t.Errorf("record %d/%d: key %q, tick %s (%v)", p, off, key, tk.Key(), err)
		}
		got++
		return nil
	})
	if err != nil || got != want {
		t.Fatalf("ReadRange: %d records, want %d (err %v)", got, want, err)
	}
	if err := f.ReadRange(ctx, topic, end, end, func(int32, int64, []byte, []byte) error {
		t.Error("a record from an empty range")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
