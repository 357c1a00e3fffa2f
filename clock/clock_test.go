package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeFiresTimersWhenDue(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	if !c.Stop() {
		t.Fatal("stopping a pending timer should report true")
	}
	if f.Pending() != 2 {
		t.Fatalf("pending %d, want 2", f.Pending())
	}
	f.Advance(time.Second)
	select {
	case at := <-b.C():
		if !at.Equal(start.Add(time.Second)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("1s timer did not fire after 1s")
	}
	select {
	case <-a.C():
		t.Fatal("2s timer fired after 1s")
	default:
	}
	f.Advance(time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("2s timer did not fire after 2s")
	}
	if a.Stop() {
		t.Fatal("stopping a fired timer should report false")
	}
	f.Advance(time.Hour)
	select {
	case <-c.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if got := f.Now(); !got.Equal(start.Add(time.Hour + 2*time.Second)) {
		t.Fatalf("now %v", got)
	}
}

func TestFakeZeroDurationFiresAtOnce(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	select {
	case <-f.After(0):
	default:
		t.Fatal("After(0) did not fire immediately")
	}
}

func TestWaitTimersUnblocksOnNewTimer(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	done := make(chan struct{})
	go func() {
		f.WaitTimers(1)
		close(done)
	}()
	f.NewTimer(time.Minute)
	<-done
}

func TestOrReal(t *testing.T) {
	if OrReal(nil) != Real {
		t.Fatal("nil should mean the real clock")
	}
	f := NewFake(time.Unix(0, 0))
	if OrReal(f) != Clock(f) {
		t.Fatal("a given clock must be kept")
	}
}

func TestWaitTimersForTimesOut(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	if f.WaitTimersFor(1, 10*time.Millisecond) {
		t.Fatal("no timer was armed")
	}
	f.NewTimer(time.Second)
	if !f.WaitTimersFor(1, time.Second) {
		t.Fatal("an armed timer was not seen")
	}
}

func TestSleep(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		advance bool // the test moves the clock past d once the timer is armed
		want    error
	}{
		{"full wait", context.Background(), time.Second, true, nil},
		{"zero wait arms nothing", context.Background(), 0, false, nil},
		{"negative wait arms nothing", context.Background(), -time.Second, false, nil},
		{"ended context, no wait", ended, 0, false, context.Canceled},
		{"ended context, long wait", ended, time.Hour, false, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFake(time.Unix(1_700_000_000, 0))
			done := make(chan error, 1)
			go func() { done <- Sleep(tc.ctx, f, tc.d) }()
			if tc.advance {
				if !f.WaitTimersFor(1, 5*time.Second) {
					t.Fatal("Sleep armed no timer")
				}
				f.Advance(tc.d)
			}
			select {
			case err := <-done:
				if err != tc.want {
					t.Fatalf("Sleep = %v, want %v", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Sleep did not return")
			}
			if n := f.Pending(); n != 0 {
				t.Fatalf("%d timers left pending", n)
			}
		})
	}
}
