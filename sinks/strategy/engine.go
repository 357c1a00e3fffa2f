package strategy

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

// engine is the deterministic part of the strategy engine, the part the
// live sink and the Backtester share: the configured strategies, the
// routing of ticks to them by pair, the turning of decisions into signals
// and the paper fills. It does no I/O and keeps no metrics; its callers
// serialise access to it.
type engine struct {
	insts  []*instance
	routes map[tick.Pair]*route
	pairs  []*route // routes in order of their first strategy, for Backtester
	seen   *journal.Seen
}

type instance struct {
	entry Entry
	*built
	idx     int // position in the configuration
	fp      string
	paper   paper
	mark    apd.Decimal // the pair's latest price
	signals int
}

type route struct {
	idx   int   // position in engine.pairs
	last  int64 // event time of the last tick applied
	insts []*instance
}

type pending struct {
	inst *instance
	tr   Trigger
}

// build makes every configured strategy afresh.
func (e *engine) build(entries []Entry) error {
	e.insts, e.routes, e.pairs = nil, map[tick.Pair]*route{}, nil
	if e.seen == nil {
		e.seen = journal.NewSeen(journal.DefaultSeen)
	}
	for i := range entries {
		ent := entries[i]
		b, err := ent.build()
		if err != nil {
			return fmt.Errorf("strategy: strategies[%d] %s: %w", i, ent.label(), err)
		}
		in := &instance{entry: ent, built: b, idx: i, fp: fingerprint(&ent)}
		e.insts = append(e.insts, in)
		r := e.routes[b.pair]
		if r == nil {
			r = &route{idx: len(e.pairs)}
			e.routes[b.pair] = r
			e.pairs = append(e.pairs, r)
		}
		r.insts = append(r.insts, in)
	}
	return nil
}

// fed says what feed did with a tick.
type fed int

const (
	fedApplied  fed = iota
	fedNoRoute      // no strategy watches the pair
	fedReplayed     // at or before the pair's last applied event time
)

// feed passes one valid tick to its pair's strategies, in configuration
// order, and appends their triggers to trs. A tick at or before the pair's
// last applied event time is skipped: a redelivered or replayed tick
// changes nothing, live and in a backtest alike.
func (e *engine) feed(t *tick.Tick, trs []pending) (fed, *route, []pending) {
	r := e.routes[tick.Pair{Exchange: t.Exchange, Symbol: t.Symbol}]
	if r == nil {
		return fedNoRoute, nil, trs
	}
	if t.Timestamp <= r.last {
		return fedReplayed, r, trs
	}
	r.last = t.Timestamp
	for _, in := range r.insts {
		in.mark.Set(&t.Price)
		if tr, ok := in.strategy.ShouldTrigger(t); ok {
			trs = append(trs, pending{in, tr})
		}
	}
	return fedApplied, r, trs
}

var (
	errBadDecision = errors.New("bad decision")
	errDuplicate   = errors.New("signal already published")
)

// fill turns a decision on a trigger into its signal and fills it on the
// strategy's paper account. It fails with errBadDecision for a side that
// is neither buy nor sell and with errDuplicate for a signal whose ID was
// already decided (a replay); neither changes any state.
func (e *engine) fill(in *instance, tr *Trigger, dec *Decision) (signal.Signal, error) {
	if _, err := signal.ParseSide(string(dec.Side)); err != nil {
		return signal.Signal{}, fmt.Errorf("%w: %w", errBadDecision, err)
	}
	name := in.entry.Name
	sig := signal.Signal{
		ID:        signal.ID(name, in.pair, dec.Side, tr.Timestamp),
		Strategy:  name,
		Type:      in.entry.Type,
		Exchange:  in.pair.Exchange,
		Symbol:    in.pair.Symbol,
		Side:      dec.Side,
		Price:     tr.Price.Text('f'),
		Reason:    dec.Reason,
		Timestamp: tr.Timestamp,
	}
	if !e.seen.Add(sig.ID) {
		return signal.Signal{}, errDuplicate
	}
	in.paper.apply(sig.Side, &tr.Price, &in.quantity, in.entry.AllowShort)
	in.signals++
	return sig, nil
}
