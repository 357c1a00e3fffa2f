package strategy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/internal/journal"
	"github.com/tickflow/tickflow/signal"
	"github.com/tickflow/tickflow/tick"
)

const (
	journalName  = "strategy"
	stateVersion = 1
)

type snapshot struct {
	Version    int                      `json:"version"`
	Strategies map[string]*strategySnap `json:"strategies"`
	// Pairs is each pair's last applied event time: replayed ticks at or
	// before it are skipped.
	Pairs  map[string]int64 `json:"pairs"`
	Seen   []string         `json:"seen"`
	Recent []signal.Signal  `json:"recent"`
}

type strategySnap struct {
	// Fingerprint of the type, pair and parameters the state was built
	// under; a changed strategy starts afresh rather than from state that
	// means something else.
	Fingerprint string          `json:"fingerprint"`
	State       json.RawMessage `json:"state"`
	Paper       paper           `json:"paper"`
	Mark        apd.Decimal     `json:"mark"`
	Signals     int             `json:"signals"`
}

func fingerprint(e *Entry) string {
	h := sha256.New()
	params := e.ParamsView()
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(h, "%s\x00%s\x00%s", e.Type, e.Exchange, e.Symbol)
	for _, k := range keys {
		fmt.Fprintf(h, "\x00%s=%s", k, params[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// A journal record is one batch: the ticks applied (uvarint length of the
// tick block, then each tick as uvarint length and JSON) and the signals
// decided, as JSON. Ticks rebuild the strategies' state by ShouldTrigger,
// which is deterministic; signals are logged because Execute need not be.

// loggedSignal is a signal and the fingerprint of the strategy that
// decided it: a strategy configured differently since does not get the old
// one's fills.
type loggedSignal struct {
	Fingerprint string        `json:"fp"`
	Signal      signal.Signal `json:"signal"`
}

func encodeRecord(ticks []byte, sigs []loggedSignal) ([]byte, error) {
	js, err := json.Marshal(sigs)
	if err != nil {
		return nil, err
	}
	rec := binary.AppendUvarint(make([]byte, 0, len(ticks)+len(js)+10), uint64(len(ticks)))
	rec = append(rec, ticks...)
	return append(rec, js...), nil
}

func decodeRecord(rec []byte) ([]tick.Tick, []loggedSignal, error) {
	n, k := binary.Uvarint(rec)
	if k <= 0 || uint64(len(rec)-k) < n {
		return nil, nil, errors.New("truncated record")
	}
	block, rest := rec[k:k+int(n)], rec[k+int(n):]
	ticks, err := journal.Ticks(block)
	if err != nil {
		return nil, nil, err
	}
	var sigs []loggedSignal
	if err := json.Unmarshal(rest, &sigs); err != nil {
		return nil, nil, err
	}
	return ticks, sigs, nil
}

// journaled is the engine as its journal sees it (events.State); the
// journal calls it under the batch lock.
type journaled Sink

// Snapshot is the whole state: every strategy's windows and sides, the
// paper accounts, each pair's last event time, recently published signal
// IDs and the REST list.
func (j *journaled) Snapshot() (any, error) {
	j.mu.RLock()
	defer j.mu.RUnlock()
	snap := snapshot{
		Version:    stateVersion,
		Strategies: make(map[string]*strategySnap, len(j.insts)),
		Pairs:      make(map[string]int64, len(j.routes)),
		Seen:       j.seen.List(),
		Recent:     j.recent.All(),
	}
	for _, in := range j.insts {
		st, err := in.strategy.State()
		if err != nil {
			return nil, fmt.Errorf("state of %q: %w", in.entry.Name, err)
		}
		ss := &strategySnap{Fingerprint: in.fp, State: st, Paper: in.paper, Signals: in.signals}
		ss.Mark.Set(&in.mark)
		snap.Strategies[in.entry.Name] = ss
	}
	for p, r := range j.routes {
		snap.Pairs[p.String()] = r.last
	}
	return &snap, nil
}

func (j *journaled) Restore(data []byte) error {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	restored := 0
	for _, in := range j.insts {
		ss := snap.Strategies[in.entry.Name]
		if ss == nil {
			continue
		}
		if ss.Fingerprint != in.fp {
			j.log.Info("strategy: configuration changed since the snapshot, starting afresh", "strategy", in.entry.Name)
			continue
		}
		if err := in.strategy.Restore(ss.State); err != nil {
			j.m.stateErrors.Inc()
			j.log.Error("strategy: cannot restore state, starting afresh", "strategy", in.entry.Name, "err", err)
			continue
		}
		in.paper = ss.Paper
		in.mark.Set(&ss.Mark)
		in.signals = ss.Signals
		restored++
	}
	for p, r := range j.routes {
		r.last = snap.Pairs[p.String()]
	}
	for _, k := range snap.Seen {
		j.seen.Add(k)
	}
	for _, sig := range snap.Recent {
		j.recent.Add(sig)
	}
	j.log.Info("strategy: snapshot restored", "strategies", restored, "signals", len(snap.Recent))
	return nil
}

// Replay applies a logged batch: its ticks through ShouldTrigger
// (triggers ignored: their outcome is logged) and its signals to the paper
// accounts, the REST list and the published set. Signals are logged
// because Execute need not be deterministic.
func (j *journaled) Replay(rec []byte) error {
	ticks, sigs, err := decodeRecord(rec)
	if err != nil {
		return err
	}
	s := (*Sink)(j)
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := range ticks {
		s.feed(&ticks[i], nil)
	}
	for _, ls := range sigs {
		sig := ls.Signal
		if !j.seen.Add(sig.ID) {
			continue
		}
		j.recent.Add(sig)
		in := j.instance(sig.Strategy)
		if in == nil || in.fp != ls.Fingerprint {
			continue
		}
		var price apd.Decimal
		if err := tick.ParseDecimal(&price, sig.Price); err != nil {
			return fmt.Errorf("signal %s: %w", sig.ID, err)
		}
		in.paper.apply(sig.Side, &price, &in.quantity, in.entry.AllowShort)
		in.signals++
	}
	return nil
}

func (j *journaled) instance(name string) *instance {
	for _, in := range j.insts {
		if in.entry.Name == name {
			return in
		}
	}
	return nil
}

// Reset rebuilds every strategy from its configuration.
func (j *journaled) Reset() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seen = journal.NewSeen(journal.DefaultSeen)
	j.recent.Reset()
	return (*Sink)(j).build()
}
