package risk

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/tick"
	"github.com/tickflow/tickflow/window"
)

// The snapshot is the whole engine state plus the REST list, written after
// every batch once its alerts are on the bus and before the batch is
// acknowledged. A restart loads it and the runtime replays from the last
// committed offset; ticks the snapshot already reflects are skipped per pair
// by event time, so the replay neither loses window state nor raises an
// alert twice. The only gap is a crash between publishing a batch's alerts
// and writing the snapshot: those alerts are published again with the same
// IDs (at-least-once, as the topic's consumers are told).

const (
	stateFile    = "risk.state.json"
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
	s := snapshot{Version: stateVersion, Exchanges: map[string]exchangeSnap{}, Seen: e.seen.list()}
	for name, ex := range e.exchanges {
		s.Exchanges[name] = exchangeSnap{Newest: ex.newest, NextCheck: ex.nextCheck}
		for _, ps := range ex.pairs {
			p := pairSnap{Exchange: ps.pair.Exchange, Symbol: ps.pair.Symbol, Last: ps.last}
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
		ps := e.pair(tick.Pair{Exchange: p.Exchange, Symbol: p.Symbol})
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
		e.seen.add(k)
	}
}

// saveState writes the snapshot atomically: a reader (the next start) sees
// the old file or the new one, never half of one.
func saveState(dir string, s *snapshot) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, stateFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// errCorrupt marks a state file that exists but cannot be used.
var errCorrupt = errors.New("corrupt state file")

// loadState reads the snapshot; a missing file is (nil, nil).
func loadState(dir string) (*snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", errCorrupt, s.Version, stateVersion)
	}
	return &s, nil
}
