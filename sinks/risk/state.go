package risk

import (
	"encoding/json"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/internal/window"
	"github.com/tickflow/tickflow/tick"
)

// State survives restarts through a journal (package journal) in
// state_dir: every batch appends the ticks it applied, once its alerts are
// on the bus and before WriteBatch returns, so before the batch's offsets
// are committed; when the log outgrows the last snapshot the whole state is
// written instead. A restart loads the snapshot, replays the logged ticks
// through the engine (the alerts they raise were published already: they
// only refill the REST list and the set of published IDs), and the runtime
// then replays from the last committed offset; ticks the state already
// reflects are skipped per pair by event time. So windows, cooldowns and
// open alerts carry on exactly, and no alert is raised twice. The only gap
// is a crash between publishing a batch's alerts and logging its ticks:
// those alerts are published again, with the same IDs (at-least-once).

const (
	journalName  = "risk"
	stateVersion = 1
)

type snapshot struct {
	Version   int                     `json:"version"`
	Pairs     []pairSnap              `json:"pairs"`
	Exchanges map[string]exchangeSnap `json:"exchanges"`
	Seen      []string                `json:"seen"`
	Recent    []alert.Alert           `json:"recent"`
}

type pairSnap struct {
	Exchange string             `json:"exchange"`
	Symbol   string             `json:"symbol"`
	Base     string             `json:"base,omitempty"` // the instrument the pair's records carried; absent in older snapshots
	Quote    string             `json:"quote,omitempty"`
	Last     int64              `json:"last"`
	Price    apd.Decimal        `json:"price"`
	Window   []window.Sample    `json:"window,omitempty"`
	Trackers map[string]tracker `json:"trackers,omitempty"`
}

type exchangeSnap struct {
	Newest    int64 `json:"newest"`
	NextCheck int64 `json:"next_check"`
}

func (e *engine) snapshot() snapshot {
	s := snapshot{Version: stateVersion, Exchanges: map[string]exchangeSnap{}, Seen: e.seen.List()}
	for name, ex := range e.exchanges {
		s.Exchanges[name] = exchangeSnap{Newest: ex.newest, NextCheck: ex.nextCheck}
		for _, ps := range ex.pairs {
			p := pairSnap{Exchange: ps.pair.Exchange, Symbol: ps.pair.Symbol, Base: ps.inst.Base, Quote: ps.inst.Quote, Last: ps.last}
			p.Price.Set(&ps.price)
			if ps.vol != nil {
				p.Window = ps.vol.Samples()
			}
			for r, tr := range ps.tr {
				if tr != (tracker{}) {
					if p.Trackers == nil {
						p.Trackers = map[string]tracker{}
					}
					p.Trackers[ruleNames[r]] = tr
				}
			}
			s.Pairs = append(s.Pairs, p)
		}
	}
	return s
}

func (e *engine) restore(s *snapshot) {
	for i := range s.Pairs {
		p := &s.Pairs[i]
		ps := e.pair(tick.Pair{Exchange: p.Exchange, Symbol: p.Symbol}, p.Base, p.Quote)
		ps.last = p.Last
		ps.price.Set(&p.Price)
		if ps.vol != nil {
			ps.vol.Restore(p.Window)
		}
		for r, name := range ruleNames {
			ps.tr[r] = p.Trackers[name]
		}
	}
	for name, x := range s.Exchanges {
		if ex := e.exchanges[name]; ex != nil {
			ex.newest, ex.nextCheck = x.Newest, x.NextCheck
		}
	}
	for _, k := range s.Seen {
		e.seen.Add(k)
	}
}

// journaled is the monitor as its journal sees it (events.State); the
// journal calls it under the batch lock.
type journaled Sink

func (j *journaled) Snapshot() (any, error) {
	snap := j.eng.snapshot()
	snap.Recent = j.recent.All()
	return &snap, nil
}

func (j *journaled) Restore(data []byte) error {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return err
	}
	j.eng.restore(&snap)
	for _, a := range snap.Recent {
		j.recent.Add(a)
	}
	return nil
}

// Replay applies a logged batch of ticks. The alerts they raise were
// published already: they only refill the REST list and the set of
// published IDs, and are counted where nobody reads.
func (j *journaled) Replay(rec []byte) error {
	ticks, err := journal.Ticks(rec)
	if err != nil {
		return err
	}
	live := j.eng.m
	j.eng.m = j.quiet
	defer func() { j.eng.m = live }()
	for i := range ticks {
		j.eng.apply(&ticks[i])
	}
	for _, a := range j.eng.drain() {
		j.recent.Add(a)
	}
	return nil
}

func (j *journaled) Reset() error {
	j.eng = newEngine(j.cfg, j.m)
	j.recent.Reset()
	return nil
}
