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
	} {
		err := tc.p.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v", tc.p, err)
		}
	}
}
