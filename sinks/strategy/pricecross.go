package strategy

import (
	"encoding/json"
	"fmt"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// price_cross signals when the price crosses a level: buy on the way up,
// sell on the way down. A tick exactly at the level counts as having
// crossed it; the first tick only sets the starting side.
func init() {
	RegisterType(Type{
		Name:   "price_cross",
		Params: func() any { return &priceCrossParams{Direction: "both"} },
		New:    newPriceCross,
	})
}

type priceCrossParams struct {
	Level     string `yaml:"level"`
	Direction string `yaml:"direction"` // up, down or both
}

type priceCross struct {
	decided
	level    apd.Decimal
	up, down bool
	st       struct {
		Prev    apd.Decimal `json:"prev"`
		HasPrev bool        `json:"has_prev"`
	}
}

func newPriceCross(p any) (Strategy, error) {
	params := p.(*priceCrossParams)
	s := &priceCross{}
	if params.Level == "" {
		return nil, fmt.Errorf("level: required")
	}
	if err := tick.ParseDecimal(&s.level, params.Level); err != nil {
		return nil, fmt.Errorf("level: %w", err)
	}
	if s.level.Sign() <= 0 {
		return nil, fmt.Errorf("level: must be > 0, got %q", params.Level)
	}
	switch params.Direction {
	case "up":
		s.up = true
	case "down":
		s.down = true
	case "both":
		s.up, s.down = true, true
	default:
		return nil, fmt.Errorf("direction: %q is not up, down or both", params.Direction)
	}
	return s, nil
}

func (s *priceCross) ShouldTrigger(t *tick.Tick) (Trigger, bool) {
	var tr Trigger
	fired := false
	if s.st.HasPrev {
		prev := &s.st.Prev
		switch {
		case s.up && prev.Cmp(&s.level) < 0 && t.Price.Cmp(&s.level) >= 0:
			tr, fired = trigger(t, signal.Buy, "price "+t.Price.Text('f')+" crossed above "+s.level.Text('f')), true
		case s.down && prev.Cmp(&s.level) > 0 && t.Price.Cmp(&s.level) <= 0:
			tr, fired = trigger(t, signal.Sell, "price "+t.Price.Text('f')+" crossed below "+s.level.Text('f')), true
		}
	}
	s.st.Prev.Set(&t.Price)
	s.st.HasPrev = true
	return tr, fired
}

func (s *priceCross) State() (json.RawMessage, error) { return marshalState(&s.st) }
func (s *priceCross) Restore(b json.RawMessage) error { return unmarshalState(b, &s.st) }

func trigger(t *tick.Tick, side signal.Side, reason string) Trigger {
	tr := Trigger{Side: side, Timestamp: t.Timestamp, Reason: reason}
	tr.Price.Set(&t.Price)
	return tr
}
