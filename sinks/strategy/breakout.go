package strategy

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// breakout signals when the price leaves the channel of the last N
// completed periods: buy above their highest high, sell below their lowest
// low. It signals once per excursion: the price must come back inside the
// channel before the same side can signal again.
func init() {
	RegisterType(Type{
		Name:   "breakout",
		Params: func() any { return &breakoutParams{Bars: "tick"} },
		New:    newBreakout,
	})
}

type breakoutParams struct {
	Period int    `yaml:"period"`
	Bars   string `yaml:"bars"`
}

type breakout struct {
	decided
	period int
	width  int64
	done   bar
	st     struct {
		Highs []apd.Decimal `json:"highs"` // ring of the last period bars
		Lows  []apd.Decimal `json:"lows"`
		Pos   int           `json:"pos"`
		Count int           `json:"count"`
		High  apd.Decimal   `json:"high"` // the channel over those bars
		Low   apd.Decimal   `json:"low"`
		Zone  int           `json:"zone"` // +1 above, -1 below, 0 inside
		Bars  barAgg        `json:"bars"`
	}
}

func newBreakout(p any) (Strategy, error) {
	params := p.(*breakoutParams)
	switch {
	case params.Period == 0:
		return nil, fmt.Errorf("period: required")
	case params.Period < 1 || params.Period > 100_000:
		return nil, fmt.Errorf("period: must be within 1..100000, got %d", params.Period)
	}
	width, err := parseBars(params.Bars)
	if err != nil {
		return nil, err
	}
	s := &breakout{period: params.Period, width: width}
	s.st.Highs = make([]apd.Decimal, s.period)
	s.st.Lows = make([]apd.Decimal, s.period)
	return s, nil
}

func (s *breakout) ShouldTrigger(t *tick.Tick) (Trigger, bool) {
	if s.width == 0 {
		tr, ok := s.judge(t)
		s.push(&t.Price, &t.Price)
		return tr, ok
	}
	if s.st.Bars.add(s.width, t.Timestamp, &t.Price, &s.done) {
		s.push(&s.done.High, &s.done.Low)
	}
	return s.judge(t)
}

func (s *breakout) judge(t *tick.Tick) (Trigger, bool) {
	st := &s.st
	if st.Count < s.period {
		return Trigger{}, false
	}
	zone := 0
	switch {
	case t.Price.Cmp(&st.High) > 0:
		zone = 1
	case t.Price.Cmp(&st.Low) < 0:
		zone = -1
	}
	prev := st.Zone
	st.Zone = zone
	if zone == 0 || zone == prev {
		return Trigger{}, false
	}
	n := strconv.Itoa(s.period) + " " + barsLabel(s.width)
	if zone > 0 {
		return trigger(t, signal.Buy, "price "+t.Price.Text('f')+" broke above the "+n+" high "+st.High.Text('f')), true
	}
	return trigger(t, signal.Sell, "price "+t.Price.Text('f')+" broke below the "+n+" low "+st.Low.Text('f')), true
}

// push adds a completed period. The channel is recomputed over all N only
// when the bar leaving it held the high or the low.
func (s *breakout) push(high, low *apd.Decimal) {
	st := &s.st
	full := st.Count == s.period
	rescan := full && (st.Highs[st.Pos].Cmp(&st.High) >= 0 || st.Lows[st.Pos].Cmp(&st.Low) <= 0)
	st.Highs[st.Pos].Set(high)
	st.Lows[st.Pos].Set(low)
	st.Pos = (st.Pos + 1) % s.period
	if !full {
		st.Count++
	}
	switch {
	case rescan || st.Count == 1:
		st.High.Set(&st.Highs[0])
		st.Low.Set(&st.Lows[0])
		for i := 1; i < st.Count; i++ {
			if st.Highs[i].Cmp(&st.High) > 0 {
				st.High.Set(&st.Highs[i])
			}
			if st.Lows[i].Cmp(&st.Low) < 0 {
				st.Low.Set(&st.Lows[i])
			}
		}
	default:
		if high.Cmp(&st.High) > 0 {
			st.High.Set(high)
		}
		if low.Cmp(&st.Low) < 0 {
			st.Low.Set(low)
		}
	}
}

func (s *breakout) State() (json.RawMessage, error) { return marshalState(&s.st) }

func (s *breakout) Restore(b json.RawMessage) error {
	if err := unmarshalState(b, &s.st); err != nil {
		return err
	}
	if len(s.st.Highs) != s.period || len(s.st.Lows) != s.period || s.st.Pos < 0 || s.st.Pos >= s.period {
		return fmt.Errorf("state does not fit period=%d", s.period)
	}
	return nil
}
