package strategy

import (
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// A strategy's periods are either single ticks or fixed bars of event time
// ("1m": one-minute bars, aligned to the minute). A bar completes when the
// first tick of a later bar arrives, so nothing waits on a timer and a
// replay completes the same bars.

type bar struct {
	High  apd.Decimal `json:"high"`
	Low   apd.Decimal `json:"low"`
	Close apd.Decimal `json:"close"`
}

// parseBars reads the "bars" parameter: "tick" (or empty) for ticks, or a
// whole number of seconds as a duration ("1m", "5m", "15s").
func parseBars(s string) (int64, error) {
	if s == "" || s == "tick" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d%time.Second != 0 {
		return 0, fmt.Errorf("bars: %q is neither \"tick\" nor a whole number of seconds like \"1m\"", s)
	}
	return d.Milliseconds(), nil
}

// barAgg builds bars of width ms from ticks.
type barAgg struct {
	Start int64 `json:"start"` // start of the forming bar (Unix ms); 0 before the first tick
	Cur   bar   `json:"cur"`
}

// add folds in a tick. When the tick opens a new bar it copies the bar it
// completed into done and reports true.
func (b *barAgg) add(width, at int64, price *apd.Decimal, done *bar) bool {
	start := at - at%width
	switch {
	case b.Start == 0 || start > b.Start:
		completed := b.Start != 0
		if completed {
			done.High.Set(&b.Cur.High)
			done.Low.Set(&b.Cur.Low)
			done.Close.Set(&b.Cur.Close)
		}
		b.Start = start
		b.Cur.High.Set(price)
		b.Cur.Low.Set(price)
		b.Cur.Close.Set(price)
		return completed
	case start == b.Start:
		if price.Cmp(&b.Cur.High) > 0 {
			b.Cur.High.Set(price)
		}
		if price.Cmp(&b.Cur.Low) < 0 {
			b.Cur.Low.Set(price)
		}
		b.Cur.Close.Set(price)
	}
	return false // an older bar's tick: the sink only passes ticks in order, so never
}

func barsLabel(width int64) string {
	if width == 0 {
		return "ticks"
	}
	return (time.Duration(width) * time.Millisecond).String() + " bars"
}
