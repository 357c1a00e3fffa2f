package health

import (
	"context"
	"errors"
	"testing"
)

func TestSetReportsChangesAndReadiness(t *testing.T) {
	r := New()
	r.Register("sink:store", false, "no url configured")
	if changed := r.Set("broker", nil); !changed {
		t.Fatal("first Set should be a change")
	}
	if changed := r.Set("broker", nil); changed {
		t.Fatal("same state again is not a change")
	}
	if _, ready := r.Snapshot(context.Background()); !ready {
		t.Fatal("an optional component that is not ready must not fail readiness")
	}
	down := errors.New("redis: connection refused")
	if !r.Set("sink:cache", down) || r.Set("sink:cache", down) {
		t.Fatal("a failure is one change, however often it repeats")
	}
	if !r.Set("sink:cache", errors.New("redis: timeout")) {
		t.Fatal("a different reason is a change")
	}
	all, ready := r.Snapshot(context.Background())
	if ready {
		t.Fatal("a required component is down")
	}
	if len(all) != 3 || all[1].Component != "sink:cache" || all[1].Reason != "redis: timeout" || all[1].Ready {
		t.Fatalf("snapshot %+v", all)
	}
	r.Set("sink:cache", nil)
	if _, ready := r.Snapshot(context.Background()); !ready {
		t.Fatal("recovered")
	}
}

func TestChecksRunOnSnapshot(t *testing.T) {
	r := New()
	var fail error
	r.Check("sink:cache:backend", func(context.Context) error { return fail })
	if _, ready := r.Snapshot(context.Background()); !ready {
		t.Fatal("a passing check is ready")
	}
	fail = errors.New("ping failed")
	all, ready := r.Snapshot(context.Background())
	if ready || all[0].Reason != "ping failed" {
		t.Fatalf("failing check: ready=%v %+v", ready, all)
	}
}

func TestNilRegistryIsANoOp(t *testing.T) {
	var r *Registry
	r.Register("x", true, "")
	r.Set("x", nil)
	r.Check("x", nil)
}
