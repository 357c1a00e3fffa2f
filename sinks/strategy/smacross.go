package strategy

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// sma_cross signals when the fast simple moving average of closes crosses
// the slow one: buy when it crosses above, sell when below. Closes are
// ticks' prices or bar closes ("bars": "1m"). Sums are exact decimals kept
// as the window slides, and the averages are compared without dividing
// (fastSum×slow against slowSum×fast), so no rounding can make or miss a
// cross. The first comparison only sets the starting side.
func init() {
	RegisterType(Type{
		Name:   "sma_cross",
		Params: func() any { return &smaCrossParams{Bars: "tick"} },
		New:    newSMACross,
	})
}

type smaCrossParams struct {
	Fast int    `yaml:"fast"`
	Slow int    `yaml:"slow"`
	Bars string `yaml:"bars"`
}

type smaCross struct {
	decided
	fast, slow int
	width      int64 // bar width in ms; 0 for ticks
	fastN      apd.Decimal
	slowN      apd.Decimal
	done       bar
	a, b       apd.Decimal // scratch
	st         struct {
		Closes  []apd.Decimal `json:"closes"` // ring of the last slow closes
		Pos     int           `json:"pos"`    // next slot to write
		Count   int           `json:"count"`  // closes held, up to slow
		FastSum apd.Decimal   `json:"fast_sum"`
		SlowSum apd.Decimal   `json:"slow_sum"`
		Side    int           `json:"side"` // last non-zero sign of fast-slow
		Bars    barAgg        `json:"bars"`
	}
}

func newSMACross(p any) (Strategy, error) {
	params := p.(*smaCrossParams)
	switch {
	case params.Fast == 0:
		return nil, fmt.Errorf("fast: required")
	case params.Slow == 0:
		return nil, fmt.Errorf("slow: required")
	case params.Fast < 1:
		return nil, fmt.Errorf("fast: must be >= 1, got %d", params.Fast)
	case params.Slow <= params.Fast:
		return nil, fmt.Errorf("slow: must be greater than fast (%d), got %d", params.Fast, params.Slow)
	case params.Slow > 100_000:
		return nil, fmt.Errorf("slow: at most 100000 periods, got %d", params.Slow)
	}
	width, err := parseBars(params.Bars)
	if err != nil {
		return nil, err
	}
	s := &smaCross{fast: params.Fast, slow: params.Slow, width: width}
	s.fastN.SetInt64(int64(s.fast))
	s.slowN.SetInt64(int64(s.slow))
	s.st.Closes = make([]apd.Decimal, s.slow)
	return s, nil
}

func (s *smaCross) ShouldTrigger(t *tick.Tick) (Trigger, bool) {
	if s.width == 0 {
		return s.close(t, &t.Price)
	}
	if s.st.Bars.add(s.width, t.Timestamp, &t.Price, &s.done) {
		return s.close(t, &s.done.Close)
	}
	return Trigger{}, false
}

// close slides the windows over one more close and judges the cross.
func (s *smaCross) close(t *tick.Tick, c *apd.Decimal) (Trigger, bool) {
	st := &s.st
	ctx := &apd.BaseContext
	if st.Count == s.slow {
		ctx.Sub(&st.SlowSum, &st.SlowSum, &st.Closes[st.Pos])
	}
	if st.Count >= s.fast {
		ctx.Sub(&st.FastSum, &st.FastSum, &st.Closes[(st.Pos-s.fast+s.slow)%s.slow])
	}
	ctx.Add(&st.FastSum, &st.FastSum, c)
	ctx.Add(&st.SlowSum, &st.SlowSum, c)
	st.Closes[st.Pos].Set(c)
	st.Pos = (st.Pos + 1) % s.slow
	if st.Count < s.slow {
		st.Count++
		if st.Count < s.slow {
			return Trigger{}, false
		}
	}
	ctx.Mul(&s.a, &st.FastSum, &s.slowN)
	ctx.Mul(&s.b, &st.SlowSum, &s.fastN)
	side := s.a.Cmp(&s.b)
	if side == 0 {
		return Trigger{}, false
	}
	prev := st.Side
	st.Side = side
	if prev == 0 || prev == side {
		return Trigger{}, false
	}
	sd, dir := signal.Buy, "above"
	if side < 0 {
		sd, dir = signal.Sell, "below"
	}
	reason := "SMA(" + strconv.Itoa(s.fast) + ") " + mean(&st.FastSum, &s.fastN) + " crossed " + dir +
		" SMA(" + strconv.Itoa(s.slow) + ") " + mean(&st.SlowSum, &s.slowN) + " on " + barsLabel(s.width)
	return trigger(t, sd, reason), true
}

func (s *smaCross) State() (json.RawMessage, error) { return marshalState(&s.st) }

func (s *smaCross) Restore(b json.RawMessage) error {
	if err := unmarshalState(b, &s.st); err != nil {
		return err
	}
	if len(s.st.Closes) != s.slow || s.st.Pos < 0 || s.st.Pos >= s.slow || s.st.Count < 0 || s.st.Count > s.slow {
		return fmt.Errorf("state does not fit slow=%d", s.slow)
	}
	return nil
}

var meanCtx = apd.BaseContext.WithPrecision(34)

// mean is sum/n to eight places, for reasons only.
func mean(sum, n *apd.Decimal) string {
	var d apd.Decimal
	if _, err := meanCtx.Quo(&d, sum, n); err != nil {
		return "?"
	}
	if _, err := meanCtx.Quantize(&d, &d, -8); err != nil {
		return "?"
	}
	d.Reduce(&d)
	return d.Text('f')
}
