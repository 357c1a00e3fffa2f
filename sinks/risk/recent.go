package risk

import (
	"sync"

	"github.com/tickflow/tickflow/alert"
)

// recent is the bounded list of alerts the REST API serves, newest last.
type recent struct {
	mu   sync.RWMutex
	buf  []alert.Alert
	next int
	full bool
}

func newRecent(n int) *recent { return &recent{buf: make([]alert.Alert, n)} }

func (r *recent) add(a alert.Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = a
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// list returns alerts at or after since (event time, ms) with at least
// severity min ("" for any), newest first, at most limit (0 for all).
func (r *recent) list(since int64, min alert.Severity, limit int) []alert.Alert {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []alert.Alert{}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := 0; i < n && (limit <= 0 || len(out) < limit); i++ {
		a := &r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if a.Timestamp < since || (min != "" && a.Severity.Rank() < min.Rank()) {
			continue
		}
		out = append(out, *a)
	}
	return out
}

// all returns every kept alert, oldest first, for snapshots.
func (r *recent) all() []alert.Alert {
	l := r.list(0, "", 0)
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	return l
}
