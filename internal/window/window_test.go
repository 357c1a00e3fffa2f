package window

import (
	"testing"
	"time"

	"github.com/tickflow/tickflow/tick"
)

func TestPricesOldest(t *testing.T) {
	type push struct {
		at    int64
		price string
	}
	tests := []struct {
		name      string
		span      time.Duration
		slots     int
		pushes    []push
		now       int64
		wantAt    int64
		wantPrice string
		wantOK    bool
	}{
		{name: "empty", span: time.Minute, slots: 60, now: 1000, wantOK: false},
		{name: "first tick in window", span: 10 * time.Second, slots: 10,
			pushes: []push{{1000, "1"}, {5000, "2"}, {12000, "3"}}, now: 12000,
			wantAt: 5000, wantPrice: "2", wantOK: true},
		{name: "window edge is inclusive", span: 10 * time.Second, slots: 10,
			pushes: []push{{2000, "1"}, {12000, "3"}}, now: 12000,
			wantAt: 2000, wantPrice: "1", wantOK: true},
		{name: "later tick in same slot is not kept", span: 10 * time.Second, slots: 10,
			pushes: []push{{1000, "1"}, {1500, "9"}, {3000, "2"}}, now: 3000,
			wantAt: 1000, wantPrice: "1", wantOK: true},
		{name: "out of order tick ignored", span: 10 * time.Second, slots: 10,
			pushes: []push{{5000, "1"}, {3000, "9"}}, now: 5000,
			wantAt: 5000, wantPrice: "1", wantOK: true},
		{name: "everything expired", span: time.Second, slots: 10,
			pushes: []push{{1000, "1"}, {1500, "2"}}, now: 5000, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := New(tt.span, tt.slots)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.pushes {
				d := tick.MustDecimal(p.price)
				w.Push(p.at, &d)
			}
			s, ok := w.Oldest(tt.now)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if s.At != tt.wantAt || s.Price.String() != tt.wantPrice {
				t.Fatalf("oldest = %d %s, want %d %s", s.At, s.Price.String(), tt.wantAt, tt.wantPrice)
			}
		})
	}
}

// A long run at a high tick rate must not grow the window past its slots.
func TestPricesBounded(t *testing.T) {
	w, err := New(5*time.Minute, DefaultSlots)
	if err != nil {
		t.Fatal(err)
	}
	p := tick.MustDecimal("100")
	for at := int64(0); at < 3_600_000; at += 10 {
		w.Push(at, &p)
	}
	if got := len(w.Samples()); got > DefaultSlots+1 {
		t.Fatalf("kept %d samples, want at most %d", got, DefaultSlots+1)
	}
	if len(w.buf) > DefaultSlots+2 {
		t.Fatalf("buffer grew to %d", len(w.buf))
	}
}

func TestPricesRestore(t *testing.T) {
	a, _ := New(time.Minute, 60)
	for i, s := range []string{"1", "2", "3"} {
		d := tick.MustDecimal(s)
		a.Push(int64(i)*10_000, &d)
	}
	b, _ := New(time.Minute, 60)
	b.Restore(a.Samples())
	sa, _ := a.Oldest(30_000)
	sb, _ := b.Oldest(30_000)
	if sa.At != sb.At || sa.Price.Cmp(&sb.Price) != 0 {
		t.Fatalf("restored oldest %v, want %v", sb, sa)
	}
}

func TestNewRejectsBadArgs(t *testing.T) {
	if _, err := New(0, 10); err == nil {
		t.Error("zero span accepted")
	}
	if _, err := New(time.Second, 0); err == nil {
		t.Error("zero slots accepted")
	}
}
