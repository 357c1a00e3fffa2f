// Package health collects the readiness of tickflow's components for
// /readyz: the broker, each source, each sink. Components push their state
// on change (Set) or register a check that is run when asked (Check).
package health

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Status is one component's readiness.
type Status struct {
	Component string `json:"component"`
	Ready     bool   `json:"ready"`
	// Required components make /readyz fail when not ready; optional ones
	// (a sink with no backend configured) are reported but do not.
	Required bool      `json:"required"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since"`
}

// Registry holds the current status of every component. The zero value is
// not usable; use New.
type Registry struct {
	mu     sync.Mutex
	now    func() time.Time
	status map[string]*Status
	checks map[string]func(context.Context) error
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{now: time.Now, status: map[string]*Status{}, checks: map[string]func(context.Context) error{}}
}

// Register adds a component, not ready until Set says otherwise.
func (r *Registry) Register(component string, required bool, reason string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status[component] = &Status{Component: component, Required: required, Reason: reason, Since: r.now()}
}

// Set records a component's state: err == nil means ready. It reports
// whether the state changed, so callers can log once per change rather than
// once per attempt.
func (r *Registry) Set(component string, err error) (changed bool) {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.status[component]
	if !ok {
		s = &Status{Component: component, Required: true}
		r.status[component] = s
	}
	ready, reason := err == nil, ""
	if err != nil {
		reason = err.Error()
	}
	changed = !ok || s.Ready != ready || s.Reason != reason
	if !ok || s.Ready != ready {
		s.Since = r.now()
	}
	s.Ready, s.Reason = ready, reason
	return changed
}

// Check registers fn to be run on every Snapshot; its error, if any, makes
// the component not ready. Checks complement Set for components whose
// health is cheap to ask (a backend ping).
func (r *Registry) Check(component string, fn func(context.Context) error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[component] = fn
	if _, ok := r.status[component]; !ok {
		// Ready until the check says otherwise.
		r.status[component] = &Status{Component: component, Required: true, Ready: true, Since: r.now()}
	}
}

// Snapshot returns every component's status, sorted by name, after running
// the registered checks (each bounded by ctx).
func (r *Registry) Snapshot(ctx context.Context) (all []Status, ready bool) {
	r.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(r.checks))
	for k, v := range r.checks {
		checks[k] = v
	}
	r.mu.Unlock()
	results := make(map[string]error, len(checks))
	for k, fn := range checks {
		results[k] = fn(ctx)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ready = true
	for name, s := range r.status {
		st := *s
		if err, ok := results[name]; ok && err != nil && st.Ready {
			st.Ready, st.Reason = false, err.Error()
		}
		if st.Required && !st.Ready {
			ready = false
		}
		all = append(all, st)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Component < all[j].Component })
	return all, ready
}
