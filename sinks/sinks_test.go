package sinks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), want) {
			t.Fatalf("panic %v, want one containing %q", r, want)
		}
	}()
	fn()
}

func TestRegister(t *testing.T) {
	// The registry is process-wide: give this test an empty one and put the
	// real one back, so -count=N and other tests see what they expect.
	mu.Lock()
	saved := registry
	registry = map[string]Spec{}
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		registry = saved
		mu.Unlock()
	})
	ok := BatchPolicy{Size: 1, MaxWait: time.Millisecond}
	mustPanic(t, "not one of", func() { Register(Spec{Name: "mystery", Batch: ok}) })
	mustPanic(t, "default batch", func() { Register(Spec{Name: "risk", Batch: BatchPolicy{}}) })
	Register(Spec{Name: "risk", Batch: ok})
	mustPanic(t, "registered twice", func() { Register(Spec{Name: "risk", Batch: ok}) })
	if s, found := Lookup("risk"); !found || s.Batch != ok {
		t.Fatalf("lookup: %+v %v", s, found)
	}
	if got := Registered(); len(got) != 1 || got[0] != "risk" {
		t.Fatalf("registered %v", got)
	}
	if !Known("store") || Known("redis") {
		t.Fatal("Known")
	}
}

func TestBatchPolicyValidate(t *testing.T) {
	for _, tc := range []struct {
		p    BatchPolicy
		want string
	}{
		{BatchPolicy{Size: 0, MaxWait: time.Second}, "size"},
		{BatchPolicy{Size: 1, MaxWait: 0}, "max_wait"},
		{BatchPolicy{Size: 1, MaxWait: time.Second}, ""},
		{BatchPolicy{Size: 1, Min: -1, MaxWait: time.Second}, "min"},
		{BatchPolicy{Size: 10, Min: 1000, MaxWait: time.Second}, ""},
	} {
		err := tc.p.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v", tc.p, err)
		}
	}
}

type fakeSink struct{}

func (fakeSink) Connect(context.Context) error                 { return nil }
func (fakeSink) WriteBatch(context.Context, []tick.Tick) error { return nil }
func (fakeSink) Close(context.Context) error                   { return nil }
func (fakeSink) Hello() string                                 { return "hi" }

func TestPeerAs(t *testing.T) {
	type greeter interface{ Hello() string }
	type flyer interface{ Fly() }
	peers := func(name string) (Sink, bool) {
		if name == "push" {
			return fakeSink{}, true
		}
		return nil, false
	}
	if g, ok, err := PeerAs[greeter](peers, "push"); !ok || err != nil || g.Hello() != "hi" {
		t.Fatalf("present and capable: ok=%v err=%v", ok, err)
	}
	if _, ok, err := PeerAs[flyer](peers, "push"); ok || err == nil || !strings.Contains(err.Error(), `"push"`) {
		t.Fatalf("present, lacking the capability: ok=%v err=%v", ok, err)
	}
	if _, ok, err := PeerAs[greeter](peers, "cache"); ok || err != nil {
		t.Fatalf("absent: ok=%v err=%v", ok, err)
	}
	if _, ok, err := PeerAs[greeter](nil, "push"); ok || err != nil {
		t.Fatalf("no peers: ok=%v err=%v", ok, err)
	}
}

func TestBatchThresholdIsMinWithinOneToSize(t *testing.T) {
	for _, tc := range []struct {
		p    BatchPolicy
		want int
	}{
		{BatchPolicy{Size: 256}, 1},                  // no min: hand on what a poll returned
		{BatchPolicy{Size: 50_000, Min: 1000}, 1000}, // the store while the feed is slow
		{BatchPolicy{Size: 500, Min: 1000}, 500},     // an old config lowering size keeps "size or max_wait"
	} {
		if got := tc.p.Threshold(); got != tc.want {
			t.Errorf("%+v: threshold %d, want %d", tc.p, got, tc.want)
		}
	}
}
