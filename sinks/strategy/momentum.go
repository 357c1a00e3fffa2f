package strategy

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/internal/window"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// momentum signals when the price change over a window of event time
// exceeds a threshold: buy on a rise, sell on a fall, once per excursion
// (the change must fall back within the threshold before the same side
// signals again). The window's reference price is as in the risk monitor's
// volatility rule (package window).
func init() {
	RegisterType(Type{
		Name:   "momentum",
		Params: func() any { return &momentumParams{Window: 5 * time.Minute} },
		New:    newMomentum,
	})
}

type momentumParams struct {
	Window    time.Duration `yaml:"window"`
	Threshold string        `yaml:"threshold"` // a fraction: "0.01" is 1 %
}

type momentum struct {
	decided
	threshold  apd.Decimal
	w          *window.Prices
	diff, lim  apd.Decimal
	negLim     apd.Decimal
	zone       int
	thresholdS string
}

type momentumState struct {
	Zone   int             `json:"zone"`
	Window []window.Sample `json:"window"`
}

func newMomentum(p any) (Strategy, error) {
	params := p.(*momentumParams)
	s := &momentum{}
	if params.Threshold == "" {
		return nil, fmt.Errorf("threshold: required")
	}
	if err := tick.ParseDecimal(&s.threshold, params.Threshold); err != nil {
		return nil, fmt.Errorf("threshold: %w", err)
	}
	if s.threshold.Sign() <= 0 {
		return nil, fmt.Errorf("threshold: must be > 0, got %q", params.Threshold)
	}
	if params.Window < time.Second {
		return nil, fmt.Errorf("window: must be at least 1s, got %s", params.Window)
	}
	w, err := window.New(params.Window, window.DefaultSlots)
	if err != nil {
		return nil, fmt.Errorf("window: %w", err)
	}
	s.w = w
	s.thresholdS = params.Threshold
	return s, nil
}

func (s *momentum) ShouldTrigger(t *tick.Tick) (Trigger, bool) {
	s.w.Push(t.Timestamp, &t.Price)
	ref, ok := s.w.Oldest(t.Timestamp)
	if !ok {
		return Trigger{}, false
	}
	ctx := &apd.BaseContext
	ctx.Sub(&s.diff, &t.Price, &ref.Price)
	ctx.Mul(&s.lim, &s.threshold, &ref.Price)
	zone := 0
	switch {
	case s.diff.Cmp(&s.lim) > 0:
		zone = 1
	case s.diff.Cmp(s.negLim.Neg(&s.lim)) < 0:
		zone = -1
	}
	prev := s.zone
	s.zone = zone
	if zone == 0 || zone == prev {
		return Trigger{}, false
	}
	span := s.w.Span().String()
	if zone > 0 {
		return trigger(t, signal.Buy, "price rose from "+ref.Price.Text('f')+" to "+t.Price.Text('f')+" within "+span+", more than "+s.thresholdS), true
	}
	return trigger(t, signal.Sell, "price fell from "+ref.Price.Text('f')+" to "+t.Price.Text('f')+" within "+span+", more than "+s.thresholdS), true
}

func (s *momentum) State() (json.RawMessage, error) {
	return marshalState(&momentumState{Zone: s.zone, Window: s.w.Samples()})
}

func (s *momentum) Restore(b json.RawMessage) error {
	var st momentumState
	if err := unmarshalState(b, &st); err != nil {
		return err
	}
	s.zone = st.Zone
	s.w.Restore(st.Window)
	return nil
}
