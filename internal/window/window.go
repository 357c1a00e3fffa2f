// Package window holds event-time sliding windows over decimal prices, the
// one piece of arithmetic the risk monitor (volatility) and the strategy
// engine (momentum) share: "what was the price at the start of the last W of
// event time?".
//
// Memory is bounded whatever the tick rate: the window is cut into slots and
// only the first tick of each slot is kept, so the reference price is the
// first tick of the oldest slot still inside the window. Its event time is
// therefore at most one slot (W/slots) later than the exact first tick in the
// window. Everything is a function of event time alone, so a replay of the
// same ticks gives the same answers.
package window

import (
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// DefaultSlots gives one-second resolution to a five-minute window.
const DefaultSlots = 300

// Sample is one kept tick: its event time (Unix ms) and price.
type Sample struct {
	At    int64       `json:"at"`
	Price apd.Decimal `json:"price"`
}

// Prices is a sliding window of prices. The zero value is not usable; use
// New. It is not safe for concurrent use.
type Prices struct {
	span, slot int64 // ms
	buf        []Sample
	head, n    int
}

// New returns a window spanning span, kept at slots resolution.
func New(span time.Duration, slots int) (*Prices, error) {
	ms := span.Milliseconds()
	if ms <= 0 {
		return nil, fmt.Errorf("window: span must be at least 1ms, got %s", span)
	}
	if slots <= 0 {
		return nil, fmt.Errorf("window: slots must be > 0, got %d", slots)
	}
	slot := ms / int64(slots)
	if slot < 1 {
		slot = 1
	}
	// Samples in [at-span, at] fall in at most span/slot+1 slots.
	return &Prices{span: ms, slot: slot, buf: make([]Sample, ms/slot+2)}, nil
}

// Span is the window's length.
func (w *Prices) Span() time.Duration { return time.Duration(w.span) * time.Millisecond }

// Push adds a tick. Ticks must come in event-time order; an older one is
// ignored, as is a later one in the slot of the newest kept sample.
func (w *Prices) Push(at int64, price *apd.Decimal) {
	if w.n > 0 {
		last := &w.buf[(w.head+w.n-1)%len(w.buf)]
		if at < last.At || floorDiv(at, w.slot) == floorDiv(last.At, w.slot) {
			return
		}
	}
	w.evict(at)
	if w.n == len(w.buf) { // cannot happen given the sizing; keep bounded anyway
		w.head = (w.head + 1) % len(w.buf)
		w.n--
	}
	s := &w.buf[(w.head+w.n)%len(w.buf)]
	s.At = at
	s.Price.Set(price)
	w.n++
}

// Oldest returns the first kept sample within [now-span, now], dropping
// older ones. It reports false when the window is empty.
func (w *Prices) Oldest(now int64) (*Sample, bool) {
	w.evict(now)
	if w.n == 0 {
		return nil, false
	}
	return &w.buf[w.head], true
}

func (w *Prices) evict(now int64) {
	for w.n > 0 && w.buf[w.head].At < now-w.span {
		w.head = (w.head + 1) % len(w.buf)
		w.n--
	}
}

// Samples returns a copy of the kept samples, oldest first, for snapshots.
func (w *Prices) Samples() []Sample {
	out := make([]Sample, w.n)
	for i := range out {
		s := &w.buf[(w.head+i)%len(w.buf)]
		out[i].At = s.At
		out[i].Price.Set(&s.Price)
	}
	return out
}

// Restore replaces the window's content with samples taken by Samples (of
// a window of any span: those that do not fit are dropped).
func (w *Prices) Restore(samples []Sample) {
	w.head, w.n = 0, 0
	for i := range samples {
		w.Push(samples[i].At, &samples[i].Price)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}
