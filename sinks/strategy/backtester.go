package strategy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// Backtester runs configured strategies over ticks handed to it one at a
// time, with the live engine's code: the same routing and replay skip
// (feed), the same ShouldTrigger and Execute, the same turning of
// decisions into signals and the same paper fills (fill). What it leaves
// out is what makes live runs timing-dependent: there is no worker pool,
// no bus and no journal. Each trigger's Execute runs inline, in trigger
// order, before the next tick is fed.
//
// That gives the decisions of the live sink. Live, a batch's ticks are all
// fed before its triggers run, but Execute sees only its Trigger (never the
// strategy's state) and the paper fills follow trigger order, so running
// each trigger right after its tick decides the same signals, in the same
// order, as live for every pair. Live and backtest differ only where the
// live pool loses a trigger (a full queue or an Execute past the timeout);
// a Backtester never drops one, and reports an Execute that overran the
// timeout as lost, for that run to be looked into.
//
// A Backtester is not safe for concurrent use.
type Backtester struct {
	engine
	timeout time.Duration
	trs     []pending
	step    Step
}

// Raised is a signal a strategy decided, with the strategy's position in
// the configuration.
type Raised struct {
	Strategy int
	Signal   signal.Signal
}

// Failed is a trigger that yielded no signal because its Execute failed
// (Lost: it overran the timeout, which live would have dropped).
type Failed struct {
	Strategy int
	Lost     bool
	Err      error
}

// Step is what one tick did. Its slices are valid until the next Tick.
type Step struct {
	// Applied: the tick reached its pair's strategies (it is valid, some
	// strategy watches its pair, and it is later than the pair's last).
	Applied bool
	// Pair is the tick's pair's position in Pairs, or -1.
	Pair    int
	Signals []Raised
	Failed  []Failed
}

// StrategyInfo describes one configured strategy.
type StrategyInfo struct {
	Name, Type string
	Pair       tick.Pair
	Quantity   string
	AllowShort bool
	Params     map[string]string
	PairIndex  int // position of Pair in Pairs
}

// Paper is a copy of a strategy's paper account.
type Paper struct {
	Position apd.Decimal // signed: negative is short
	Entry    apd.Decimal
	Realized apd.Decimal
	Fills    int
}

// NewBacktester validates cfg and builds its strategies, each fresh.
func NewBacktester(cfg *Config) (*Backtester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("strategy: %w", err)
	}
	b := &Backtester{timeout: cfg.Timeout}
	if err := b.build(cfg.Strategies); err != nil {
		return nil, err
	}
	return b, nil
}

// Strategies describes the configured strategies, in configuration order.
func (b *Backtester) Strategies() []StrategyInfo {
	out := make([]StrategyInfo, len(b.insts))
	for i, in := range b.insts {
		q := in.entry.Quantity
		if q == "" {
			q = in.quantity.Text('f')
		}
		out[i] = StrategyInfo{
			Name: in.entry.Name, Type: in.entry.Type, Pair: in.pair, Quantity: q,
			AllowShort: in.entry.AllowShort, Params: in.entry.ParamsView(),
			PairIndex: b.routes[in.pair].idx,
		}
	}
	return out
}

// Pairs lists the pairs the strategies watch, each once, in order of
// their first strategy.
func (b *Backtester) Pairs() []tick.Pair {
	out := make([]tick.Pair, len(b.pairs))
	for i, r := range b.pairs {
		out[i] = r.insts[0].pair
	}
	return out
}

// Tick feeds one tick (ticks must come in event-time order per pair, as
// live they come in log order) and executes its triggers inline. An error
// is ctx's: the run was stopped.
func (b *Backtester) Tick(ctx context.Context, t *tick.Tick) (*Step, error) {
	st := &b.step
	st.Applied, st.Pair, st.Signals, st.Failed = false, -1, st.Signals[:0], st.Failed[:0]
	if t.Validate() != nil {
		return st, nil
	}
	var (
		f fed
		r *route
	)
	f, r, b.trs = b.feed(t, b.trs[:0])
	if r != nil {
		st.Pair = r.idx
	}
	if f != fedApplied {
		return st, nil
	}
	st.Applied = true
	for i := range b.trs {
		p := &b.trs[i]
		dec, err := b.execute(ctx, p)
		if cerr := ctx.Err(); cerr != nil {
			return st, cerr
		}
		if err == nil && dec == nil {
			continue // Execute decided against it
		}
		var sig signal.Signal
		if err == nil {
			sig, err = b.fill(p.inst, &p.tr, dec)
		}
		switch {
		case errors.Is(err, errDuplicate):
			continue
		case err != nil:
			st.Failed = append(st.Failed, Failed{Strategy: p.inst.idx, Lost: errors.Is(err, errTimeout), Err: err})
			continue
		}
		st.Signals = append(st.Signals, Raised{Strategy: p.inst.idx, Signal: sig})
	}
	return st, nil
}

// execute runs one Execute with the live timeout, judged as the pool
// judges it.
func (b *Backtester) execute(ctx context.Context, p *pending) (*Decision, error) {
	jctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	dec, err := p.inst.strategy.Execute(jctx, p.tr)
	if jctx.Err() != nil && ctx.Err() == nil {
		return nil, errTimeout
	}
	return dec, err
}

// Paper copies strategy i's paper account into dst.
func (b *Backtester) Paper(i int, dst *Paper) {
	p := &b.insts[i].paper
	dst.Position.Set(&p.Position)
	dst.Entry.Set(&p.Entry)
	dst.Realized.Set(&p.Realized)
	dst.Fills = p.Fills
}

// Exposed is the sign of strategy i's position: 1 long, -1 short, 0 flat.
func (b *Backtester) Exposed(i int) int { return b.insts[i].paper.Position.Sign() }

// Equity sets dst to strategy i's realized PnL plus its open position
// marked at the pair's latest price, as the API's paper account reports
// them.
func (b *Backtester) Equity(i int, dst *apd.Decimal) {
	in := b.insts[i]
	un := in.paper.unrealized(&in.mark)
	apd.BaseContext.Add(dst, &in.paper.Realized, &un)
}
