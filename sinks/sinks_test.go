package sinks

import (
	"strings"
	"testing"
	"time"
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
	r := NewRegistry() // the test's own: Default is what init() fills
	ok := BatchPolicy{Size: 1, MaxWait: time.Millisecond}
	mustPanic(t, "not one of", func() { r.Register(Spec{Name: "mystery", Batch: ok}) })
	mustPanic(t, "default batch", func() { r.Register(Spec{Name: "risk", Batch: BatchPolicy{}}) })
	r.Register(Spec{Name: "risk", Batch: ok})
	mustPanic(t, "registered twice", func() { r.Register(Spec{Name: "risk", Batch: ok}) })
	if s, found := r.Lookup("risk"); !found || s.Batch != ok {
		t.Fatalf("lookup: %+v %v", s, found)
	}
	if got := r.Registered(); len(got) != 1 || got[0] != "risk" {
		t.Fatalf("registered %v", got)
	}
	if _, found := Lookup("risk"); found {
		t.Fatal("registering into a test registry reached Default")
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

// Each sink's group follows from its sharing: shared and exclusive sinks
// have one group for every instance, per-instance sinks one each.
func TestSharingGroup(t *testing.T) {
	for _, tc := range []struct {
		s    Sharing
		want string
	}{
		{Shared, "tickflow.store"},
		{Exclusive, "tickflow.store"},
		{PerInstance, "tickflow.store.host-8080"},
	} {
		if got := tc.s.Group("store", "host-8080"); got != tc.want {
			t.Errorf("%s: group %q, want %q", tc.s, got, tc.want)
		}
	}
	if got := (Spec{}).SharingOf(nil); got != Shared {
		t.Errorf("a spec without Sharing is %s, want shared", got)
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
