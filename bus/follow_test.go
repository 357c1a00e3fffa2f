package bus

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"
)

// Two followers of one topic each see every record (no group splits them),
// a backfill returns the newest records before each partition's end, and
// records produced while following arrive in per-key order.
func TestFollowFansOutAndBackfills(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	ctx := context.Background()
	const side = "risk.alerts"
	if err := EnsureTopic(ctx, cc, side, 4, -1); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			// One key: one partition, so "the newest N" is well defined.
			if err := p.Publish(ctx, side, []byte("k"), []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 10)

	type got struct {
		mu   sync.Mutex
		vals []string
	}
	follow := func(backfill int) (*got, context.CancelFunc, chan error) {
		g := &got{}
		fctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- Follower{Client: cc}.Follow(fctx, side, backfill, func(_, v []byte) {
				g.mu.Lock()
				g.vals = append(g.vals, string(v))
				g.mu.Unlock()
			})
		}()
		return g, cancel, done
	}
	a, cancelA, doneA := follow(3)
	b, cancelB, doneB := follow(100) // more than the partition holds: everything
	snap := func(g *got) []string {
		g.mu.Lock()
		defer g.mu.Unlock()
		return append([]string(nil), g.vals...)
	}
	testkit.Eventually(t, 10*time.Second, "backfill", func() bool { return len(snap(a)) == 3 && len(snap(b)) == 10 })
	publish(10, 15)
	testkit.Eventually(t, 10*time.Second, "live records on both followers", func() bool {
		return len(snap(a)) == 8 && len(snap(b)) == 15
	})
	want := func(from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprint(i))
		}
		return out
	}
	if fmt.Sprint(snap(a)) != fmt.Sprint(want(7, 15)) {
		t.Errorf("follower with backfill 3 got %v, want %v", snap(a), want(7, 15))
	}
	bs := snap(b)
	if !sort.SliceIsSorted(bs, func(i, j int) bool { return len(bs[i]) < len(bs[j]) || (len(bs[i]) == len(bs[j]) && bs[i] < bs[j]) }) || len(bs) != 15 {
		t.Errorf("follower with backfill 100 got %v, want 0..14 in order", bs)
	}
	cancelA()
	cancelB()
	for _, d := range []chan error{doneA, doneB} {
		if err := <-d; err != nil {
			t.Errorf("Follow returned %v after cancel, want nil", err)
		}
	}
}

func TestFollowRejectsBadArguments(t *testing.T) {
	f := Follower{Client: ClientConfig{Brokers: []string{"127.0.0.1:1"}}}
	if err := f.Follow(context.Background(), "", 0, func(_, _ []byte) {}); err == nil {
		t.Error("empty topic accepted")
	}
	if err := f.Follow(context.Background(), "t", -1, func(_, _ []byte) {}); err == nil {
		t.Error("negative backfill accepted")
	}
}
