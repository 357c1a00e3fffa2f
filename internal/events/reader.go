package events

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/sinks"
)

// Reader follows one topic for as long as its Run lasts, through a
// group-less sinks.Follower, so every process that reads a topic sees all
// of it. If following fails it tries again with backoff; the follower's
// client already retries broker errors by itself, so that is for a
// follower that gave up.
type Reader struct {
	Follower sinks.Follower
	Topic    string
	// Backfill is how many records before each partition's end to read
	// first (0: only what is produced from now on). A reconnect reads them
	// again: Handle should tolerate repeats.
	Backfill int
	// Handle is called for each record, on Run's goroutine; it must not
	// keep key or value. An error means the record could not be decoded:
	// it is counted and skipped.
	Handle func(key, value []byte) error
	// Undecodable, if set, counts the records Handle refused.
	Undecodable prometheus.Counter
	Logger      *slog.Logger
	Clock       clock.Clock
	// Backoff is the wait before following again (default 500ms doubling
	// to 30s, jittered: every process's readers come back after a broker
	// outage, not all at once).
	Backoff backoff.Policy

	// lastBad is the last decode error logged; a record that decodes
	// clears it, so logs say when decoding starts and stops failing, not
	// once per record.
	lastBad string
}

// Run follows the topic until ctx ends, then returns nil.
func (r *Reader) Run(ctx context.Context) error {
	if r.Follower == nil {
		return errors.New("events: follow " + r.Topic + ": no follower")
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("topic", r.Topic)
	clk := clock.OrReal(r.Clock)
	bo := r.Backoff
	if bo.Validate() != nil {
		bo = backoff.Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}
	}
	for attempt := 0; ; attempt++ {
		start := clk.Now()
		err := r.Follower.Follow(ctx, r.Topic, r.Backfill, func(key, value []byte) { r.handle(log, key, value) })
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("follower stopped")
		}
		if clk.Now().Sub(start) > bo.Max {
			attempt = 0 // it had worked for a while: not a failing streak
		}
		wait := bo.Delay(attempt)
		log.Warn("events: following the topic failed; retrying", "err", err, "in", wait)
		if clock.Sleep(ctx, clk, wait) != nil {
			return nil
		}
	}
}

func (r *Reader) handle(log *slog.Logger, key, value []byte) {
	err := r.Handle(key, value)
	if err == nil {
		if r.lastBad != "" {
			log.Info("events: records decode again")
			r.lastBad = ""
		}
		return
	}
	if r.Undecodable != nil {
		r.Undecodable.Inc()
	}
	if msg := err.Error(); msg != r.lastBad {
		log.Warn("events: skipping records that do not decode (counted; logged again only when the error changes)", "key", string(key), "err", err)
		r.lastBad = msg
	}
}
