package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/tickflow/tickflow/sinks"
)

var _ sinks.BatchPublisher = (*Producer)(nil)

// PublishAll sends every record in one call and reports them all acked;
// per key they arrive in the order given. On a closed client nothing is
// acked and the error says why.
func TestPublishAll(t *testing.T) {
	_, cc := startBroker(t, t.TempDir())
	ctx := context.Background()
	const side = "strategy.signals"
	if err := EnsureTopic(ctx, cc, side, 4, -1); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(cc, ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	const n, keys = 200, 7
	ks, vs := make([][]byte, n), make([][]byte, n)
	for i := range n {
		ks[i], vs[i] = fmt.Appendf(nil, "k%d", i%keys), fmt.Appendf(nil, "%d", i)
	}
	if acked, err := p.PublishAll(ctx, side, ks, vs); err != nil || acked != n {
		t.Fatalf("PublishAll: %d acked, %v", acked, err)
	}
	if acked, err := p.PublishAll(ctx, side, nil, nil); err != nil || acked != 0 {
		t.Fatalf("PublishAll of nothing: %d, %v", acked, err)
	}
	if _, err := p.PublishAll(ctx, side, ks[:1], vs); err == nil {
		t.Fatal("PublishAll with mismatched keys and values: no error")
	}

	var mu sync.Mutex
	got := map[string][]int{}
	total := 0
	all := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Follower{Client: cc}.Follow(fctx, side, n, func(k, v []byte) {
			var i int
			fmt.Sscan(string(v), &i)
			mu.Lock()
			defer mu.Unlock()
			got[string(k)] = append(got[string(k)], i)
			if total++; total == n {
				close(all)
			}
		})
	}()
	<-all
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for k, is := range got {
		for j := 1; j < len(is); j++ {
			if is[j] <= is[j-1] {
				t.Fatalf("key %s out of order: %v", k, is)
			}
		}
	}

	_ = p.Close(ctx)
	if acked, err := p.PublishAll(ctx, side, ks[:3], vs[:3]); err == nil || acked != 0 {
		t.Fatalf("PublishAll on a closed producer: %d acked, %v", acked, err)
	}
}
