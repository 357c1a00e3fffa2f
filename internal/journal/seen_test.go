package journal

import (
	"fmt"
	"testing"
)

func TestSeenForgetsOldestFirst(t *testing.T) {
	s := NewSeen(3)
	for _, k := range []string{"a", "b", "c"} {
		if !s.Add(k) {
			t.Fatalf("%s reported as seen", k)
		}
	}
	if s.Add("b") {
		t.Fatal("b is a duplicate")
	}
	s.Add("d") // forgets a
	if got := fmt.Sprint(s.List()); got != "[b c d]" {
		t.Fatalf("list %s", got)
	}
	if !s.Add("a") {
		t.Fatal("a should have been forgotten")
	}
	if s.Add("d") {
		t.Fatal("d is still remembered")
	}
}
