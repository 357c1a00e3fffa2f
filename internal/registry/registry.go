// Package registry is the one mechanism behind tickflow's component
// registries (sinks, ingest sources): named specs, each registered once,
// usually from its package's init(), and looked up by the host. A Registry
// is a value, so a test builds its own instead of swapping a global.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry holds specs of one kind by name. Build it with New.
type Registry[S any] struct {
	kind  string
	name  func(S) string
	check func(S) error

	mu    sync.RWMutex
	specs map[string]S
}

// New returns an empty registry. kind prefixes panic messages ("sinks");
// name reads a spec's name; check, when not nil, refuses a spec that can
// never work (an unknown name, a bad default).
func New[S any](kind string, name func(S) string, check func(S) error) *Registry[S] {
	return &Registry[S]{kind: kind, name: name, check: check, specs: map[string]S{}}
}

// Register adds s. It panics when check refuses it or its name is taken:
// both are programming errors, caught when the binary starts.
func (r *Registry[S]) Register(s S) {
	name := r.name(s)
	if name == "" {
		panic(fmt.Sprintf("%s: register: empty name", r.kind))
	}
	if r.check != nil {
		if err := r.check(s); err != nil {
			panic(fmt.Sprintf("%s: register %q: %v", r.kind, name, err))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.specs[name]; dup {
		panic(fmt.Sprintf("%s: %q registered twice", r.kind, name))
	}
	r.specs[name] = s
}

// Lookup returns the spec registered as name.
func (r *Registry[S]) Lookup(name string) (S, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.specs[name]
	return s, ok
}

// Registered lists the registered names, sorted.
func (r *Registry[S]) Registered() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.specs))
	for n := range r.specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Typed adapts a constructor taking a component's own config type to one
// taking the any its spec's Config returned, so no component repeats the
// type assertion.
func Typed[E, C, T any](fn func(E, *C) (T, error)) func(E, any) (T, error) {
	return func(env E, cfg any) (T, error) {
		c, ok := cfg.(*C)
		if !ok {
			var zero T
			return zero, fmt.Errorf("config is %T, want %T", cfg, (*C)(nil))
		}
		return fn(env, c)
	}
}
