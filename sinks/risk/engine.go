package risk

import (
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/internal/window"
	"github.com/tickflow/tickflow/tick"
)

// level is what a rule concluded about one pair on one tick.
type level int8

const (
	hold    level = iota // between the firing and clearing levels, or not judgeable: no change
	trigger              // condition holds: fire unless already firing or cooling down
	clear                // condition gone: resolve if firing
)

type ruleID int

const (
	rVolatility ruleID = iota
	rVolatility24h
	rStale
	rCrossed
	rSpike
	nRules
)

var ruleNames = [nRules]string{alert.PriceVolatility, alert.PriceVolatility24h, alert.StaleFeed, alert.CrossedBook, alert.PriceSpike}

// tracker is the alert state of one rule for one pair.
type tracker struct {
	Active bool   `json:"active,omitempty"`
	ID     string `json:"id,omitempty"`
	// FiredAt is the event time of the last firing; the cooldown runs from it.
	FiredAt int64 `json:"fired_at,omitempty"`
	// Suppressed marks a condition held back by the cooldown, so it is
	// counted once per episode rather than once per tick.
	Suppressed bool `json:"suppressed,omitempty"`
}

type pairState struct {
	pair tick.Pair
	ex   *exchangeState
	// inst is the pair's normalized instrument, which names its group;
	// zero when the pair has none (then it is in no group).
	inst  instrument.Instrument
	group *spikeGroup
	// last is the event time of the last tick applied; ticks at or before
	// it are replays (or out of order) and are skipped.
	last  int64
	price apd.Decimal
	vol   *window.Prices
	tr    [nRules]tracker
}

type exchangeState struct {
	newest    int64 // newest event time seen on any pair of the exchange
	nextCheck int64 // event time of the next stale-feed sweep
	pairs     []*pairState
}

// spikeGroup is one normalized instrument across exchanges: BTC-USDT on
// okx, BTCUSDT on binance and BTC/USDT on kraken are one group.
type spikeGroup struct{ members []*pairState }

// engine applies the rules to ticks. It is a deterministic function of the
// tick stream (per pair; see the package doc for the cross-pair rules) and
// is not safe for concurrent use: the sink serialises access.
type engine struct {
	cfg       *Config
	m         *metrics
	pairs     map[tick.Pair]*pairState
	exchanges map[string]*exchangeState
	groups    map[instrument.Instrument]*spikeGroup
	seen      *journal.Seen
	// out collects the alerts raised since the caller last drained it.
	out []alert.Alert

	// scratch, reused across ticks to keep the hot path allocation-free
	diff, lim, med apd.Decimal
	others         []*pairState
	prices         []*apd.Decimal
}

func newEngine(cfg *Config, m *metrics) *engine {
	return &engine{
		cfg:       cfg,
		m:         m,
		pairs:     map[tick.Pair]*pairState{},
		exchanges: map[string]*exchangeState{},
		groups:    map[instrument.Instrument]*spikeGroup{},
		seen:      journal.NewSeen(journal.DefaultSeen),
	}
}

// pair is the state of p, made on first sight. base and quote are the
// instrument its record carries ("" in records from before records
// carried one, and in a restored snapshot of such a pair).
func (e *engine) pair(p tick.Pair, base, quote string) *pairState {
	if ps, ok := e.pairs[p]; ok {
		if base != "" && (base != ps.inst.Base || quote != ps.inst.Quote) {
			// The record knows better than the symbol form (an
			// exchange listing resolved it): move the pair over.
			e.join(ps, instrument.Instrument{Base: base, Quote: quote})
		}
		return ps
	}
	ps := &pairState{pair: p}
	if e.cfg.Volatility.Enabled {
		// Validate has checked the window, so this cannot fail.
		ps.vol, _ = window.New(e.cfg.Volatility.Window, window.DefaultSlots)
	}
	ex := e.exchanges[p.Exchange]
	if ex == nil {
		ex = &exchangeState{}
		e.exchanges[p.Exchange] = ex
	}
	ex.pairs = append(ex.pairs, ps)
	ps.ex = ex
	// A record without an instrument resolves by its symbol's form; one
	// that does not resolve has no instrument to compare across
	// exchanges, so the spike rule leaves it alone (ingest counts such
	// ticks in tickflow_ingest_ticks_unresolved_total).
	in, _ := (*instrument.Resolver)(nil).Record(p.Exchange, p.Symbol, base, quote)
	e.join(ps, in)
	e.pairs[p] = ps
	e.m.pairs.Set(float64(len(e.pairs)))
	return ps
}

// join moves ps into the spike group of in (out of every group when in is
// zero).
func (e *engine) join(ps *pairState, in instrument.Instrument) {
	if g := ps.group; g != nil {
		for i, q := range g.members {
			if q == ps {
				g.members = append(g.members[:i], g.members[i+1:]...)
				break
			}
		}
		ps.group = nil
	}
	ps.inst = in
	if in.IsZero() {
		return
	}
	g := e.groups[in]
	if g == nil {
		g = &spikeGroup{}
		e.groups[in] = g
	}
	g.members = append(g.members, ps)
	ps.group = g
}

// apply runs every enabled rule on t. It reports whether t changed state.
func (e *engine) apply(t *tick.Tick) bool {
	if err := t.Validate(); err != nil {
		e.m.skipped.WithLabelValues("invalid").Inc()
		return false
	}
	ps := e.pair(t.Pair(), t.Base, t.Quote)
	if t.Timestamp <= ps.last {
		e.m.skipped.WithLabelValues("replayed").Inc()
		return false
	}
	e.m.ticks.Inc()
	ps.last = t.Timestamp
	ps.price.Set(&t.Price)
	if t.Timestamp > ps.ex.newest {
		ps.ex.newest = t.Timestamp
	}
	c := e.cfg
	if c.Volatility.Enabled {
		e.volatility(ps, t)
	}
	if c.CrossedBook.Enabled {
		e.crossed(ps, t)
	}
	if c.PriceSpike.Enabled {
		e.spike(ps, t)
	}
	if c.StaleFeed.Enabled {
		e.stale(ps, t)
	}
	return true
}

// transition moves one (rule, pair) tracker and reports the event to
// publish, if any. idAt is the event time the alert's ID derives from; at is
// when the rule decided.
func (e *engine) transition(ps *pairState, r ruleID, lvl level, idAt, at int64) (alert.Status, bool) {
	tr := &ps.tr[r]
	switch {
	case lvl == trigger && !tr.Active:
		if tr.FiredAt != 0 && at-tr.FiredAt < e.cooldown(r).Milliseconds() {
			if !tr.Suppressed {
				tr.Suppressed = true
				e.m.suppressed.WithLabelValues(ruleNames[r]).Inc()
			}
			return "", false
		}
		tr.Active, tr.Suppressed, tr.FiredAt = true, false, at
		tr.ID = alert.ID(ruleNames[r], ps.pair, idAt)
		return alert.Firing, true
	case lvl == clear:
		tr.Suppressed = false
		if tr.Active {
			tr.Active = false
			return alert.Resolved, true
		}
	}
	return "", false
}

func (e *engine) cooldown(r ruleID) time.Duration {
	switch r {
	case rVolatility, rVolatility24h:
		return e.cfg.Volatility.Cooldown
	case rStale:
		return e.cfg.StaleFeed.Cooldown
	case rCrossed:
		return e.cfg.CrossedBook.Cooldown
	default:
		return e.cfg.PriceSpike.Cooldown
	}
}

func (e *engine) severity(r ruleID) alert.Severity {
	switch r {
	case rVolatility, rVolatility24h:
		return e.cfg.Volatility.Severity
	case rStale:
		return e.cfg.StaleFeed.Severity
	case rCrossed:
		return e.cfg.CrossedBook.Severity
	default:
		return e.cfg.PriceSpike.Severity
	}
}

// emit queues an alert unless the same event was already published.
func (e *engine) emit(a alert.Alert) {
	if !e.seen.Add(a.DedupKey()) {
		e.m.duplicates.Inc()
		return
	}
	e.m.alerts.WithLabelValues(a.Rule, string(a.Status)).Inc()
	e.out = append(e.out, a)
}

func (e *engine) newAlert(ps *pairState, r ruleID, st alert.Status, at int64) alert.Alert {
	return alert.Alert{
		ID:        ps.tr[r].ID,
		Rule:      ruleNames[r],
		Status:    st,
		Severity:  e.severity(r),
		Exchange:  ps.pair.Exchange,
		Symbol:    ps.pair.Symbol,
		Timestamp: at,
	}
}

// compare judges |price-ref| against threshold×ref (fire) and clear×ref
// (resolve) exactly, without dividing.
func (e *engine) compare(price, ref, threshold, clr *apd.Decimal) level {
	if ref.Sign() <= 0 {
		return hold
	}
	if _, err := apd.BaseContext.Sub(&e.diff, price, ref); err != nil {
		return hold
	}
	e.diff.Abs(&e.diff)
	if _, err := apd.BaseContext.Mul(&e.lim, threshold, ref); err != nil {
		return hold
	}
	if e.diff.Cmp(&e.lim) > 0 {
		return trigger
	}
	if _, err := apd.BaseContext.Mul(&e.lim, clr, ref); err != nil {
		return hold
	}
	if e.diff.Cmp(&e.lim) <= 0 {
		return clear
	}
	return hold
}

func (e *engine) volatility(ps *pairState, t *tick.Tick) {
	v := &e.cfg.Volatility
	ps.vol.Push(t.Timestamp, &t.Price)
	if ref, ok := ps.vol.Oldest(t.Timestamp); ok {
		lvl := e.compare(&t.Price, &ref.Price, &v.threshold, &v.clear)
		if st, ok := e.transition(ps, rVolatility, lvl, t.Timestamp, t.Timestamp); ok {
			e.emitMove(ps, rVolatility, st, t, &ref.Price, v.Window.String())
		}
	}
	if v.Open24hThreshold != "" && t.Open24h.Sign() > 0 {
		lvl := e.compare(&t.Price, &t.Open24h, &v.open24h, &v.open24hClear)
		if st, ok := e.transition(ps, rVolatility24h, lvl, t.Timestamp, t.Timestamp); ok {
			e.emitMove(ps, rVolatility24h, st, t, &t.Open24h, "24h")
		}
	}
}

func (e *engine) emitMove(ps *pairState, r ruleID, st alert.Status, t *tick.Tick, from *apd.Decimal, window string) {
	a := e.newAlert(ps, r, st, t.Timestamp)
	a.ChangePercent = percent(&t.Price, from)
	a.Window = window
	a.FromPrice = from.Text('f')
	a.ToPrice = t.Price.Text('f')
	if st == alert.Firing {
		a.Message = ps.pair.String() + " moved " + signed(a.ChangePercent) + "% in " + window + " (" + a.FromPrice + " → " + a.ToPrice + ")"
	} else {
		a.Message = ps.pair.String() + " change over " + window + " back to " + signed(a.ChangePercent) + "%"
	}
	e.emit(a)
}

func (e *engine) crossed(ps *pairState, t *tick.Tick) {
	if t.Bid.Sign() <= 0 || t.Ask.Sign() <= 0 {
		return // the source gives no book: nothing to judge
	}
	lvl := clear
	cmp := t.Bid.Cmp(&t.Ask)
	if cmp >= 0 {
		lvl = trigger
	}
	st, ok := e.transition(ps, rCrossed, lvl, t.Timestamp, t.Timestamp)
	if !ok {
		return
	}
	a := e.newAlert(ps, rCrossed, st, t.Timestamp)
	a.Bid, a.Ask = t.Bid.Text('f'), t.Ask.Text('f')
	switch {
	case st == alert.Resolved:
		a.Message = ps.pair.String() + " book normal again: bid " + a.Bid + " < ask " + a.Ask
	case cmp == 0:
		a.Message = ps.pair.String() + " book locked: bid " + a.Bid + " = ask " + a.Ask
	default:
		a.Message = ps.pair.String() + " book crossed: bid " + a.Bid + " > ask " + a.Ask
	}
	e.emit(a)
}

func (e *engine) spike(ps *pairState, t *tick.Tick) {
	g := ps.group
	if g == nil || len(g.members) < 2 {
		return
	}
	oldest := t.Timestamp - e.cfg.PriceSpike.MaxAge.Milliseconds()
	e.others, e.prices = e.others[:0], e.prices[:0]
	for _, q := range g.members {
		if q != ps && q.last >= oldest {
			e.others = append(e.others, q)
			e.prices = append(e.prices, &q.price)
		}
	}
	if len(e.prices) == 0 {
		return // nothing fresh to compare against
	}
	if !e.median() {
		return
	}
	p := &e.cfg.PriceSpike
	lvl := e.compare(&t.Price, &e.med, &p.threshold, &p.clear)
	st, ok := e.transition(ps, rSpike, lvl, t.Timestamp, t.Timestamp)
	if !ok {
		return
	}
	a := e.newAlert(ps, rSpike, st, t.Timestamp)
	a.Price = t.Price.Text('f')
	a.Reference = e.med.Text('f')
	a.DeviationPercent = percent(&t.Price, &e.med)
	for _, q := range e.others {
		a.Others = append(a.Others, q.pair.Exchange)
	}
	others := strings.Join(a.Others, ", ")
	if st == alert.Firing {
		a.Message = ps.pair.String() + " at " + a.Price + " deviates " + signed(a.DeviationPercent) + "% from the median " + a.Reference + " of " + others
	} else {
		a.Message = ps.pair.String() + " back in line with " + others + " (" + signed(a.DeviationPercent) + "%)"
	}
	e.emit(a)
}

// median sets e.med to the median of e.prices, exactly.
func (e *engine) median() bool {
	ps := e.prices
	for i := 1; i < len(ps); i++ { // insertion sort: a handful of exchanges
		for j := i; j > 0 && ps[j].Cmp(ps[j-1]) < 0; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	n := len(ps)
	if n%2 == 1 {
		e.med.Set(ps[n/2])
		return true
	}
	if _, err := apd.BaseContext.Add(&e.med, ps[n/2-1], ps[n/2]); err != nil {
		return false
	}
	_, err := apd.BaseContext.Mul(&e.med, &e.med, half)
	return err == nil
}

var half = apd.New(5, -1)

func (e *engine) stale(ps *pairState, t *tick.Tick) {
	if st, ok := e.transition(ps, rStale, clear, 0, t.Timestamp); ok {
		a := e.newAlert(ps, rStale, st, t.Timestamp)
		a.LastTick = t.Timestamp
		a.Message = ps.pair.String() + " ticking again"
		e.emit(a)
	}
	ex := ps.ex
	if ex.newest < ex.nextCheck {
		return
	}
	sc := &e.cfg.StaleFeed
	every := sc.CheckEvery.Milliseconds()
	ex.nextCheck = (ex.newest/every + 1) * every
	after := sc.After.Milliseconds()
	for _, q := range ex.pairs {
		if q == ps || ex.newest-q.last <= after {
			continue
		}
		// The ID derives from the silent pair's last tick: however the
		// silence is noticed, it is the same silence.
		st, ok := e.transition(q, rStale, trigger, q.last, ex.newest)
		if !ok {
			continue
		}
		a := e.newAlert(q, rStale, st, ex.newest)
		a.LastTick, a.ExchangeTime = q.last, ex.newest
		silent := time.Duration(ex.newest-q.last) * time.Millisecond
		a.Message = q.pair.String() + " has had no tick for " + silent.String() + " while " + q.pair.Exchange + " kept ticking"
		e.emit(a)
	}
}

// drain hands over the alerts raised so far.
func (e *engine) drain() []alert.Alert {
	out := e.out
	e.out = nil
	return out
}

var (
	hundred   = apd.New(100, 0)
	pctCtx    = apd.BaseContext.WithPrecision(34)
	pctDigits = int32(-4)
)

// percent is (to-from)/from×100 to four decimal places. It is for display
// only: decisions compare undivided products (see compare).
func percent(to, from *apd.Decimal) string {
	var d apd.Decimal
	if _, err := pctCtx.Sub(&d, to, from); err != nil {
		return "?"
	}
	if _, err := pctCtx.Mul(&d, &d, hundred); err != nil {
		return "?"
	}
	if _, err := pctCtx.Quo(&d, &d, from); err != nil {
		return "?"
	}
	if _, err := pctCtx.Quantize(&d, &d, pctDigits); err != nil {
		return "?"
	}
	d.Reduce(&d)
	return d.Text('f')
}

func signed(s string) string {
	if strings.HasPrefix(s, "-") {
		return s
	}
	return "+" + s
}
