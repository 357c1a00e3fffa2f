// Package backtest runs the configured strategies over stored ticks with
// the live engine's code (strategy.Backtester: the same strategies, the
// same signal and paper-fill code, Execute inline in tick order) and
// reports how each did: trades, PnL, maximum drawdown, win rate, exposure,
// the equity curve and the trade list.
//
// The report is a function of the ticks read and the configuration alone:
// the same ticks give the same report, byte for byte (it holds no wall
// time; the command prints the rate on the terminal instead).
//
// # Definitions
//
// All money is in the pair's quote currency, exact decimals; equity starts
// at 0 and is the paper account's realized PnL plus its open position
// marked at the pair's latest price.
//
//   - The range is from the event time of the first tick read to that of
//     the last (all selected pairs).
//   - A trade is a round trip: a fill that opens a position and the fill
//     that closes it. trades counts closed ones; a position still open at
//     the end is listed (open: true) with its exit at the last price, and
//     counted in unrealized_pnl, not in trades.
//   - pnl = realized_pnl + unrealized_pnl at the end of the range.
//   - win_rate = wins / trades, where a win is a closed trade with PnL > 0
//     (a trade at exactly 0 is neither a win nor a loss but counts in
//     trades); null without closed trades. Four places, rounded half even.
//   - max_drawdown is the largest fall of equity from its running maximum
//     (which starts at 0), with equity taken at every applied tick of the
//     strategy's pair; 0 when equity never fell. It is given with the event
//     times of that peak and of the trough.
//   - exposure = exposure_ms / range length: the share of the range during
//     which a position was open (long or short), from its opening fill to
//     its closing fill or the end of the range. Four places, half even.
//   - equity lists points {t, equity}: the last applied tick of each Step
//     of event time (aligned to Unix time), and every fill.
//   - prices (per pair) are OHLC of applied ticks per Step.
package backtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/replay"
	"github.com/tickflow/tickflow/sinks/strategy"
	"github.com/tickflow/tickflow/tick"
)

// Options configure a run. The zero value keeps everything, one-minute
// steps, silently.
type Options struct {
	// Strategies, when not empty, keeps only the strategies named.
	Strategies []string
	// Step is the spacing of the equity and price points (default 1m,
	// at least 1s).
	Step time.Duration
	// From and To are the requested bounds, echoed in the report; the
	// source applies them.
	From, To time.Time
	// Source names where the ticks came from ("store", "log"), echoed.
	Source string
	// Progress, when set, gets a progress line every ProgressEvery
	// (default 500 ms), redrawn in place, and a final one.
	Progress      io.Writer
	ProgressEvery time.Duration
	Clock         clock.Clock
}

// Report is what a run found. Encode it with encoding/json.
type Report struct {
	Source string `json:"source,omitempty"`
	// From and To are the requested bounds (RFC 3339), empty when open.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// First and Last are the event times (Unix ms) of the first and last
	// tick read: the range.
	First int64  `json:"first"`
	Last  int64  `json:"last"`
	Step  string `json:"step"`
	// Ticks counts ticks read; Applied those that reached a strategy.
	Ticks      int64       `json:"ticks"`
	Applied    int64       `json:"applied"`
	Strategies []*Strategy `json:"strategies"`
	Pairs      []*Pair     `json:"pairs"`
	// Signals are every signal decided, each encoded as the live engine
	// publishes it on strategy.signals, ordered by event time and then by
	// strategy in configuration order (for each pair: the order decided).
	Signals []json.RawMessage `json:"signals"`
}

// Strategy is one strategy's result.
type Strategy struct {
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Exchange   string            `json:"exchange"`
	Symbol     string            `json:"symbol"`
	Quantity   string            `json:"quantity"`
	AllowShort bool              `json:"allow_short"`
	Params     map[string]string `json:"params"`

	Ticks   int64 `json:"ticks"` // applied ticks of its pair
	Signals int   `json:"signals"`
	Fills   int   `json:"fills"`
	// Lost counts triggers whose Execute overran the timeout (live would
	// have dropped them too); Failed those whose Execute failed.
	Lost   int `json:"lost"`
	Failed int `json:"failed"`

	Trades        int     `json:"trades"`
	Wins          int     `json:"wins"`
	Losses        int     `json:"losses"`
	WinRate       *string `json:"win_rate"`
	RealizedPnL   string  `json:"realized_pnl"`
	UnrealizedPnL string  `json:"unrealized_pnl"`
	PnL           string  `json:"pnl"`
	MaxDrawdown   string  `json:"max_drawdown"`
	DrawdownPeak  int64   `json:"max_drawdown_peak_at,omitempty"`
	DrawdownLow   int64   `json:"max_drawdown_trough_at,omitempty"`
	Exposure      string  `json:"exposure"`
	ExposureMs    int64   `json:"exposure_ms"`
	Position      string  `json:"position"` // at the end, signed

	TradeList []Trade `json:"trade_list"`
	Equity    []Point `json:"equity"`

	idx   int // in the configuration
	pair  int // in Report.Pairs
	state stratState
}

// Trade is one round trip.
type Trade struct {
	Side       string `json:"side"` // long or short
	Quantity   string `json:"quantity"`
	EntryAt    int64  `json:"entry_at"`
	EntryPrice string `json:"entry_price"`
	ExitAt     int64  `json:"exit_at"`
	ExitPrice  string `json:"exit_price"`
	PnL        string `json:"pnl"`
	Open       bool   `json:"open,omitempty"`
}

// Point is the equity at an event time (Unix ms).
type Point struct {
	T      int64  `json:"t"`
	Equity string `json:"equity"`
}

// Pair is one watched pair's prices per step.
type Pair struct {
	Exchange string `json:"exchange"`
	Symbol   string `json:"symbol"`
	Ticks    int64  `json:"ticks"`
	Bars     []Bar  `json:"bars"`

	cur     Bar
	hasCur  bool
	hi, lo  apd.Decimal
	closing apd.Decimal
}

// Bar is OHLC over one step starting at T (Unix ms).
type Bar struct {
	T     int64  `json:"t"`
	Open  string `json:"o"`
	High  string `json:"h"`
	Low   string `json:"l"`
	Close string `json:"c"`
}

// stratState is the running measurement of one strategy.
type stratState struct {
	paper              strategy.Paper // as of the last fill
	equity, peak, dd   apd.Decimal
	maxDD              apd.Decimal
	peakAt             int64
	openSince          int64
	pending            Point // the last applied tick's point in the current step
	pendingStep        int64
	hasPending         bool
	entryAt            int64
	entryPrice, lastPx apd.Decimal
}

type decided struct {
	at       int64
	strategy int
	raw      json.RawMessage
}

// Stats is how a run went, for the terminal: not part of the report.
type Stats struct {
	Ticks   int64
	Elapsed time.Duration
}

// ErrNoStrategies: the configuration (or the -strategy selection) has none.
var ErrNoStrategies = errors.New("no strategies to backtest (sinks.strategy.strategies is empty or -strategy matched none)")

// Run backtests cfg's strategies over src.
func Run(ctx context.Context, cfg *strategy.Config, src replay.Source, o Options) (*Report, Stats, error) {
	if o.Step == 0 {
		o.Step = time.Minute
	}
	if o.Step < time.Second {
		return nil, Stats{}, fmt.Errorf("step %s: must be at least 1s", o.Step)
	}
	clk := clock.OrReal(o.Clock)
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 500 * time.Millisecond
	}
	sel, err := selectStrategies(cfg, o.Strategies)
	if err != nil {
		return nil, Stats{}, err
	}
	bt, err := strategy.NewBacktester(sel)
	if err != nil {
		return nil, Stats{}, err
	}
	rep := &Report{Source: o.Source, Step: o.Step.String(), Signals: []json.RawMessage{}}
	if !o.From.IsZero() {
		rep.From = o.From.UTC().Format(time.RFC3339Nano)
	}
	if !o.To.IsZero() {
		rep.To = o.To.UTC().Format(time.RFC3339Nano)
	}
	for _, p := range bt.Pairs() {
		rep.Pairs = append(rep.Pairs, &Pair{Exchange: p.Exchange, Symbol: p.Symbol, Bars: []Bar{}})
	}
	byPair := make([][]*Strategy, len(rep.Pairs))
	for i, si := range bt.Strategies() {
		s := &Strategy{Name: si.Name, Type: si.Type, Exchange: si.Pair.Exchange, Symbol: si.Pair.Symbol,
			Quantity: si.Quantity, AllowShort: si.AllowShort, Params: si.Params, idx: i, pair: si.PairIndex,
			TradeList: []Trade{}, Equity: []Point{}}
		rep.Strategies = append(rep.Strategies, s)
		byPair[si.PairIndex] = append(byPair[si.PairIndex], s)
	}
	step := o.Step.Milliseconds()
	var sigs []decided
	start := clk.Now()
	lastProgress := start
	err = src.Scan(ctx, func(t *tick.Tick) error {
		if rep.Ticks == 0 {
			for _, s := range rep.Strategies {
				s.state.peakAt = t.Timestamp // equity starts at its peak, 0
			}
		}
		if rep.Ticks == 0 || t.Timestamp < rep.First {
			rep.First = t.Timestamp
		}
		rep.Ticks++
		if t.Timestamp > rep.Last {
			rep.Last = t.Timestamp
		}
		st, err := bt.Tick(ctx, t)
		if err != nil {
			return err
		}
		if o.Progress != nil && rep.Ticks%4096 == 0 {
			if now := clk.Now(); now.Sub(lastProgress) >= o.ProgressEvery {
				lastProgress = now
				progress(o.Progress, rep, now.Sub(start), false)
			}
		}
		if !st.Applied {
			return nil
		}
		rep.Applied++
		bucket := t.Timestamp - t.Timestamp%step
		rep.Pairs[st.Pair].add(bucket, &t.Price)
		for _, f := range st.Failed {
			if f.Lost {
				rep.Strategies[f.Strategy].Lost++
			} else {
				rep.Strategies[f.Strategy].Failed++
			}
		}
		for _, r := range st.Signals {
			b, err := json.Marshal(&r.Signal)
			if err != nil {
				return err
			}
			sigs = append(sigs, decided{r.Signal.Timestamp, r.Strategy, b})
			rep.Strategies[r.Strategy].Signals++
		}
		for _, s := range byPair[st.Pair] {
			s.observe(bt, t, bucket, st.Signals)
		}
		return nil
	})
	stats := Stats{Ticks: rep.Ticks, Elapsed: clk.Now().Sub(start)}
	if o.Progress != nil {
		progress(o.Progress, rep, stats.Elapsed, true)
	}
	if err != nil {
		return nil, stats, err
	}
	// Each pair's ticks come in order, but ticks of different pairs at
	// one event time may come in either order (from the log, partitions
	// are merged by event time), so signals are listed in a canonical
	// order: by event time, then by strategy in configuration order,
	// which is each pair's own decision order too.
	slices.SortStableFunc(sigs, func(a, b decided) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.strategy, b.strategy))
	})
	for _, d := range sigs {
		rep.Signals = append(rep.Signals, d.raw)
	}
	for _, p := range rep.Pairs {
		p.flush()
	}
	for _, s := range rep.Strategies {
		s.finish(bt, rep.First, rep.Last)
	}
	return rep, stats, nil
}

func selectStrategies(cfg *strategy.Config, names []string) (*strategy.Config, error) {
	sel := *cfg
	if len(names) > 0 {
		sel.Strategies = nil
		for _, n := range names {
			found := false
			for _, e := range cfg.Strategies {
				if e.Name == n {
					sel.Strategies = append(sel.Strategies, e)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("-strategy %q: no such strategy in sinks.strategy.strategies", n)
			}
		}
	}
	if len(sel.Strategies) == 0 {
		return nil, ErrNoStrategies
	}
	return &sel, nil
}

// observe measures one applied tick of the strategy's pair, after the
// engine has filled the signals it raised.
func (s *Strategy) observe(bt *strategy.Backtester, t *tick.Tick, bucket int64, sigs []strategy.Raised) {
	s.Ticks++
	st := &s.state
	st.lastPx.Set(&t.Price)
	filled := false
	for i := range sigs {
		if sigs[i].Strategy == s.idx {
			filled = s.fill(bt, t)
		}
	}
	if bt.Exposed(s.idx) != 0 || filled {
		bt.Equity(s.idx, &st.equity)
		ctx := &apd.BaseContext
		if st.equity.Cmp(&st.peak) > 0 {
			st.peak.Set(&st.equity)
			st.peakAt = t.Timestamp
		} else {
			ctx.Sub(&st.dd, &st.peak, &st.equity)
			if st.dd.Cmp(&st.maxDD) > 0 {
				st.maxDD.Set(&st.dd)
				s.DrawdownPeak, s.DrawdownLow = st.peakAt, t.Timestamp
			}
		}
	}
	// Equity points: every fill, and the step's last tick.
	if st.hasPending && bucket != st.pendingStep {
		s.Equity = append(s.Equity, st.pending)
		st.hasPending = false
	}
	p := Point{T: t.Timestamp, Equity: reduced(&st.equity)}
	if filled {
		s.Equity = append(s.Equity, p)
		st.hasPending = false
		return
	}
	st.pending, st.pendingStep, st.hasPending = p, bucket, true
}

// fill reads the paper account after a signal and records what changed:
// a closed round trip and a new position. It reports whether anything did
// (a signal in the direction already held fills nothing).
func (s *Strategy) fill(bt *strategy.Backtester, t *tick.Tick) bool {
	st := &s.state
	var now strategy.Paper
	bt.Paper(s.idx, &now)
	before := &st.paper
	if now.Fills == before.Fills {
		return false
	}
	if before.Position.Sign() != 0 && now.Position.Cmp(&before.Position) != 0 {
		var pnl apd.Decimal
		apd.BaseContext.Sub(&pnl, &now.Realized, &before.Realized)
		s.TradeList = append(s.TradeList, s.trade(&before.Position, &before.Entry, t.Timestamp, &t.Price, &pnl, false))
		s.ExposureMs += t.Timestamp - st.openSince
		s.Trades++
		switch pnl.Sign() {
		case 1:
			s.Wins++
		case -1:
			s.Losses++
		}
	}
	if now.Position.Sign() != 0 && now.Position.Cmp(&before.Position) != 0 {
		st.openSince = t.Timestamp
	}
	st.paper.Position.Set(&now.Position)
	st.paper.Entry.Set(&now.Entry)
	st.paper.Realized.Set(&now.Realized)
	st.paper.Fills = now.Fills
	return true
}

func (s *Strategy) trade(pos, entry *apd.Decimal, at int64, price, pnl *apd.Decimal, open bool) Trade {
	side := "long"
	var q apd.Decimal
	q.Abs(pos)
	if pos.Sign() < 0 {
		side = "short"
	}
	return Trade{Side: side, Quantity: reduced(&q), EntryAt: s.state.openSince, EntryPrice: entry.Text('f'),
		ExitAt: at, ExitPrice: price.Text('f'), PnL: reduced(pnl), Open: open}
}

// finish closes the measurements at the end of the range.
func (s *Strategy) finish(bt *strategy.Backtester, first, last int64) {
	st := &s.state
	if st.hasPending {
		s.Equity = append(s.Equity, st.pending)
		st.hasPending = false
	}
	var p strategy.Paper
	bt.Paper(s.idx, &p)
	var eq, un apd.Decimal
	bt.Equity(s.idx, &eq)
	apd.BaseContext.Sub(&un, &eq, &p.Realized)
	if p.Position.Sign() != 0 {
		s.TradeList = append(s.TradeList, s.trade(&p.Position, &p.Entry, last, &st.lastPx, &un, true))
		s.ExposureMs += last - st.openSince
	}
	s.Fills = p.Fills
	s.Position = reduced(&p.Position)
	s.RealizedPnL, s.UnrealizedPnL, s.PnL = reduced(&p.Realized), reduced(&un), reduced(&eq)
	s.MaxDrawdown = reduced(&st.maxDD)
	if s.Trades > 0 {
		r := ratio(int64(s.Wins), int64(s.Trades))
		s.WinRate = &r
	}
	s.Exposure = "0.0000"
	if last > first {
		s.Exposure = ratio(s.ExposureMs, last-first)
	}
}

// add folds a price into the pair's bar of the step starting at bucket.
func (p *Pair) add(bucket int64, price *apd.Decimal) {
	p.Ticks++
	if p.hasCur && bucket != p.cur.T {
		p.flush()
	}
	if !p.hasCur {
		p.cur = Bar{T: bucket, Open: price.Text('f')}
		p.hi.Set(price)
		p.lo.Set(price)
		p.hasCur = true
	}
	if price.Cmp(&p.hi) > 0 {
		p.hi.Set(price)
	}
	if price.Cmp(&p.lo) < 0 {
		p.lo.Set(price)
	}
	p.closing.Set(price)
}

func (p *Pair) flush() {
	if !p.hasCur {
		return
	}
	p.cur.High, p.cur.Low, p.cur.Close = p.hi.Text('f'), p.lo.Text('f'), p.closing.Text('f')
	p.Bars = append(p.Bars, p.cur)
	p.hasCur = false
}

var ratioCtx = apd.BaseContext.WithPrecision(34)

// ratio is n/d to four places, rounded half even.
func ratio(n, d int64) string {
	var q, a, b apd.Decimal
	a.SetInt64(n)
	b.SetInt64(d)
	c := ratioCtx
	c.Rounding = apd.RoundHalfEven
	if _, err := c.Quo(&q, &a, &b); err != nil {
		return "?"
	}
	if _, err := c.Quantize(&q, &q, -4); err != nil {
		return "?"
	}
	return q.Text('f')
}

// reduced drops the trailing zeros products leave ("3.00" -> "3").
func reduced(d *apd.Decimal) string {
	var r apd.Decimal
	r.Reduce(d)
	return r.Text('f')
}

func progress(w io.Writer, r *Report, elapsed time.Duration, final bool) {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(r.Ticks) / s
	}
	at := "-"
	if r.Ticks > 0 {
		at = time.UnixMilli(r.Last).UTC().Format("2006-01-02T15:04:05.000Z")
	}
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(w, "\rbacktest: %d ticks  %.0f ticks/s  event time %s  %s%s", r.Ticks, rate, at, elapsed.Round(100*time.Millisecond), end)
}
