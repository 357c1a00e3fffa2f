package api

import (
	"context"

	"github.com/tickflow/tickflow/tick"
)

// TickHistory is the durable history behind the cache: the store sink
// implements it. Ticks answers newest first. LatestTick reports found=false
// (with a nil error) for a pair it has never seen; err is for a layer that
// could not answer.
type TickHistory interface {
	LatestTick(ctx context.Context, exchange, symbol string) (t tick.Tick, found bool, err error)
	Ticks(ctx context.Context, q TickQuery) ([]tick.Tick, error)
}

// TickQuery selects a page of one pair's ticks, newest first. It is
// tick.Query, so providers implement TickHistory without importing api.
type TickQuery = tick.Query

// TickCache is the hot layer in front of the history: the cache sink
// implements it. Its method names differ from TickHistory's on purpose, so
// one component never satisfies both by accident.
type TickCache interface {
	// Latest is the pair's newest tick by event time; found=false with a
	// nil error when the cache holds nothing for the pair.
	Latest(ctx context.Context, exchange, symbol string) (t tick.Tick, found bool, err error)
	// History answers q from what the cache holds, newest first.
	History(ctx context.Context, q TickQuery) (CachedTicks, error)
	// Put re-populates the cache with a tick read from the history; it
	// never moves a newer cached tick backwards.
	Put(ctx context.Context, t tick.Tick) error
	// Pairs lists the latest tick of every pair the cache currently holds.
	Pairs(ctx context.Context) ([]tick.Tick, error)
}

// CachedTicks is the cache's answer to a history query.
type CachedTicks struct {
	// Ticks are the matching ticks the cache holds, newest first, all with
	// Timestamp >= Since.
	Ticks []tick.Tick
	// Since is the event time (Unix ms) from which the cache holds every
	// tick of the pair it was given; older ticks, if any, are only in the
	// history. Zero when the cache holds nothing for the pair.
	Since int64
}
