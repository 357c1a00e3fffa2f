// Package replay republishes stored ticks into a Kafka topic, paced as
// they happened (or faster, or flat out), so a new service can be built
// against real history. The ticks come from the history store or from the
// broker's retained log, oldest first, and leave keyed as live ones are
// ("exchange:symbol"), so each pair stays ordered within its partition.
package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/tick"
)

// Source yields stored ticks oldest first; fn's tick is valid only during
// the call, and an error from fn stops the scan and is returned.
type Source interface {
	Scan(ctx context.Context, fn func(*tick.Tick) error) error
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context, fn func(*tick.Tick) error) error

// Scan calls f.
func (f SourceFunc) Scan(ctx context.Context, fn func(*tick.Tick) error) error { return f(ctx, fn) }

// Producer is where replayed ticks go (*bus.Producer): Produce keys a tick
// by pair and returns once it is buffered; Flush waits for every buffered
// tick to be acknowledged; Err reports a tick the broker refused.
type Producer interface {
	Produce(ctx context.Context, t *tick.Tick) error
	Flush(ctx context.Context) error
	Err() error
}

// Options configure a replay. The zero value replays flat out, silently.
type Options struct {
	// Speed is how many times faster than recorded to replay: 1 keeps the
	// recorded gaps between event times, 10 makes them a tenth; 0 (or
	// less) sends as fast as the broker takes them.
	Speed float64
	Clock clock.Clock
	// Progress, when set, gets a progress line every ProgressEvery
	// (default 500 ms), redrawn in place, and a final line.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Stats is what a replay did.
type Stats struct {
	Ticks          int64         // ticks produced and acknowledged
	First, Last    int64         // event times (Unix ms) of the first and last tick
	Elapsed        time.Duration // wall time
	BehindSchedule time.Duration // the most a paced tick went out late
}

// Run replays src into dst. It returns once every tick is acknowledged, or
// with the first error; ctx ending stops it early (the ticks produced
// until then are flushed first).
func Run(ctx context.Context, src Source, dst Producer, o Options) (Stats, error) {
	clk := clock.OrReal(o.Clock)
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 500 * time.Millisecond
	}
	var st Stats
	start := clk.Now()
	var (
		epoch        int64 // event time of the first tick
		lastProgress = start
	)
	err := src.Scan(ctx, func(t *tick.Tick) error {
		if st.Ticks == 0 {
			epoch, st.First = t.Timestamp, t.Timestamp
		}
		if o.Speed > 0 {
			due := start.Add(time.Duration(float64(time.Duration(t.Timestamp-epoch)*time.Millisecond) / o.Speed))
			if wait := due.Sub(clk.Now()); wait > 0 {
				if err := clock.Sleep(ctx, clk, wait); err != nil {
					return err
				}
			} else if -wait > st.BehindSchedule {
				st.BehindSchedule = -wait
			}
		}
		if err := dst.Produce(ctx, t); err != nil {
			return fmt.Errorf("replay: produce %s at %d: %w", t.Key(), t.Timestamp, err)
		}
		st.Ticks++
		st.Last = t.Timestamp
		if now := clk.Now(); o.Progress != nil && now.Sub(lastProgress) >= o.ProgressEvery {
			lastProgress = now
			progress(o.Progress, st, now.Sub(start), false)
		}
		return nil
	})
	// Whatever was handed over is flushed, also after an error or a stop,
	// so the count below is what the broker holds.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if ferr := dst.Flush(fctx); ferr != nil {
		err = errors.Join(err, fmt.Errorf("replay: flush: %w", ferr))
	}
	if perr := dst.Err(); perr != nil {
		err = errors.Join(err, fmt.Errorf("replay: the broker refused ticks: %w", perr))
	}
	st.Elapsed = clk.Now().Sub(start)
	if o.Progress != nil {
		progress(o.Progress, st, st.Elapsed, true)
	}
	return st, err
}

// progress draws one status line; final ends it with a newline.
func progress(w io.Writer, st Stats, elapsed time.Duration, final bool) {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(st.Ticks) / s
	}
	at := "-"
	if st.Ticks > 0 {
		at = time.UnixMilli(st.Last).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(w, "\rreplay: %d ticks  %.0f ticks/s  event time %s  %s%s", st.Ticks, rate, at, elapsed.Round(100*time.Millisecond), end)
}
