package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type spec struct {
	name string
	ok   bool
}

func newTest() *Registry[spec] {
	return New("things", func(s spec) string { return s.name }, func(s spec) error {
		if !s.ok {
			return errors.New("not ok")
		}
		return nil
	})
}

func panics(fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	fn()
	return ""
}

func TestRegister(t *testing.T) {
	r := newTest()
	for _, tc := range []struct {
		name string
		s    spec
		want string // panic message part; "" registers
	}{
		{"first", spec{"b", true}, ""},
		{"second", spec{"a", true}, ""},
		{"refused by check", spec{"c", false}, `things: register "c": not ok`},
		{"duplicate", spec{"b", true}, `things: "b" registered twice`},
		{"no name", spec{"", true}, "things: register: empty name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := panics(func() { r.Register(tc.s) })
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("panic %q, want %q", got, tc.want)
			}
		})
	}
	if got := r.Registered(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("Registered = %v, want [a b]", got)
	}
	if s, ok := r.Lookup("a"); !ok || s.name != "a" {
		t.Fatalf("Lookup(a) = %+v, %v", s, ok)
	}
	if _, ok := r.Lookup("c"); ok {
		t.Fatal("a refused spec was registered")
	}
	// Registries are independent values.
	if got := newTest().Registered(); len(got) != 0 {
		t.Fatalf("a new registry holds %v", got)
	}
}

func TestNilCheckAcceptsAnything(t *testing.T) {
	r := New("things", func(s spec) string { return s.name }, nil)
	r.Register(spec{name: "x"})
	if _, ok := r.Lookup("x"); !ok {
		t.Fatal("not registered")
	}
}

func TestTyped(t *testing.T) {
	type cfg struct{ n int }
	build := Typed(func(prefix string, c *cfg) (string, error) { return fmt.Sprint(prefix, c.n), nil })
	if got, err := build("n=", &cfg{3}); err != nil || got != "n=3" {
		t.Fatalf("Typed = %q, %v", got, err)
	}
	if _, err := build("n=", &struct{}{}); err == nil || !strings.Contains(err.Error(), "want *registry.cfg") {
		t.Fatalf("wrong config type: %v", err)
	}
}
