// Package backoff is tickflow's one retry delay: exponential from a minimum,
// capped at a maximum, with jitter unless the caller owns the only client
// retrying. The reconnect loops, the ingest pump and the sink runtime all
// use it, each waiting with clock.Sleep.
package backoff

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// Policy is Min·2^attempt capped at Max. With jitter (the default) the
// delay is "equal jitter": half of it fixed, half uniformly random, so
// clients dropped together do not come back together, yet never retry in a
// tight loop. The zero value is not usable; Validate says why.
type Policy struct {
	Min, Max time.Duration
	// NoJitter gives the bare exponential, for a retry of one resource the
	// caller owns, where there is no herd to spread.
	NoJitter bool
	// Rand returns a uniform value in [0, n); nil uses math/rand/v2. Tests
	// pin it to the extremes.
	Rand func(n int64) int64
}

// Validate checks 0 < Min <= Max.
func (p Policy) Validate() error {
	if p.Min <= 0 || p.Max < p.Min {
		return fmt.Errorf("backoff: need 0 < min <= max, got %s..%s", p.Min, p.Max)
	}
	return nil
}

// Delay is the wait before retry attempt n (0-based).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Min
	for i := 0; i < attempt && d < p.Max; i++ {
		if d > p.Max/2 { // doubling would pass Max (or overflow)
			d = p.Max
			break
		}
		d *= 2
	}
	d = min(d, p.Max)
	half := d / 2
	if p.NoJitter || half <= 0 {
		return d
	}
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Int64N
	}
	return half + time.Duration(rnd(int64(d-half)+1))
}
