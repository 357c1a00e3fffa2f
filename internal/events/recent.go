package events

import (
	"sort"
	"sync"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/signal"
)

// Recent is a bounded list of events, oldest forgotten first. It is safe
// for concurrent use.
type Recent[E any] struct {
	mu   sync.RWMutex
	buf  []E
	next int
	full bool
}

// NewRecent returns an empty list keeping up to n events (at least one).
func NewRecent[E any](n int) *Recent[E] {
	return &Recent[E]{buf: make([]E, max(n, 1))}
}

// Add keeps e, forgetting the oldest event when full.
func (r *Recent[E]) Add(e E) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// AddByTime keeps e unless an event with the same id is kept already, or
// the list is full and e is older, by ts, than every event kept; when
// full, e replaces the oldest. It reports whether e was kept. It is for
// events that arrive out of event-time order and may arrive twice, as a
// topic's partitions interleave them and a re-read repeats them: the list
// keeps the newest, once each, whatever order they came in. (List's order
// is then not meaningful; Alerts and Signals sort by event time.)
func (r *Recent[E]) AddByTime(e E, ts func(*E) int64, id func(*E) string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	k := id(&e)
	oldest := 0
	for i := range n {
		if id(&r.buf[i]) == k {
			return false
		}
		if ts(&r.buf[i]) < ts(&r.buf[oldest]) {
			oldest = i
		}
	}
	if !r.full {
		r.buf[r.next] = e
		r.next++
		if r.next == len(r.buf) {
			r.next, r.full = 0, true
		}
		return true
	}
	if ts(&e) < ts(&r.buf[oldest]) {
		return false
	}
	r.buf[oldest] = e
	return true
}

// Reset forgets every event.
func (r *Recent[E]) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.buf)
	r.next, r.full = 0, false
}

// List returns the kept events keep accepts (nil: all), most recently
// added first.
func (r *Recent[E]) List(keep func(*E) bool) []E {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := []E{}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	for i := 0; i < n; i++ {
		e := &r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if keep == nil || keep(e) {
			out = append(out, *e)
		}
	}
	return out
}

// All returns every kept event, oldest first, for snapshots.
func (r *Recent[E]) All() []E {
	l := r.List(nil)
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	return l
}

// newest sorts events by event time, newest first (ties: most recently
// added first), and cuts the list to limit (0: no limit). Events read from
// a topic's partitions arrive interleaved, not in event-time order.
func newest[E any](l []E, ts func(*E) int64, limit int) []E {
	sort.SliceStable(l, func(i, j int) bool { return ts(&l[i]) > ts(&l[j]) })
	if limit > 0 && len(l) > limit {
		l = l[:limit]
	}
	return l
}

// Alerts is the bounded list of recent alerts the REST API serves.
type Alerts struct{ *Recent[alert.Alert] }

// NewAlerts keeps up to n alerts.
func NewAlerts(n int) Alerts { return Alerts{NewRecent[alert.Alert](n)} }

// RecentAlerts lists kept alerts at or after since (event time, Unix ms)
// with at least severity min ("" for any), newest first, at most limit (0
// for all kept). It is api.AlertSource.
func (a Alerts) RecentAlerts(since int64, min alert.Severity, limit int) []alert.Alert {
	l := a.List(func(x *alert.Alert) bool {
		return x.Timestamp >= since && (min == "" || x.Severity.Rank() >= min.Rank())
	})
	return newest(l, alertTime, limit)
}

// Signals is the bounded list of recent signals the REST API serves.
type Signals struct{ *Recent[signal.Signal] }

// NewSignals keeps up to n signals.
func NewSignals(n int) Signals { return Signals{NewRecent[signal.Signal](n)} }

// RecentSignals lists kept signals of strategy ("" for all) at or after
// since (event time, Unix ms), newest first, at most limit (0 for all
// kept).
func (s Signals) RecentSignals(strategy string, since int64, limit int) []signal.Signal {
	l := s.List(func(x *signal.Signal) bool {
		return (strategy == "" || x.Strategy == strategy) && x.Timestamp >= since
	})
	return newest(l, signalTime, limit)
}

func alertTime(a *alert.Alert) int64    { return a.Timestamp }
func signalTime(s *signal.Signal) int64 { return s.Timestamp }
