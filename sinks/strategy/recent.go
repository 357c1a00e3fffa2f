package strategy

import (
	"sync"

	"github.com/tickflow/tickflow/signal"
)

// recent is the bounded list of signals the REST API serves.
type recent struct {
	mu   sync.RWMutex
	buf  []signal.Signal
	next int
	full bool
}

func newRecent(n int) *recent { return &recent{buf: make([]signal.Signal, n)} }

func (r *recent) add(s signal.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = s
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// list returns signals of strategy ("" for all) at or after since (event
// time, ms), newest first, at most limit (0 for all kept).
func (r *recent) list(strategy string, since int64, limit int) []signal.Signal {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []signal.Signal{}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := 0; i < n && (limit <= 0 || len(out) < limit); i++ {
		s := &r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if (strategy != "" && s.Strategy != strategy) || s.Timestamp < since {
			continue
		}
		out = append(out, *s)
	}
	return out
}

// all returns every kept signal, oldest first, for snapshots.
func (r *recent) all() []signal.Signal {
	l := r.list("", 0, 0)
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	return l
}
