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

func appendTick(block []byte, t *tick.Tick) []byte {
	var tmp [512]byte
	js := t.AppendJSON(tmp[:0])
	block = binary.AppendUvarint(block, uint64(len(js)))
	return append(block, js...)
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
	var ticks []tick.Tick
	for len(block) > 0 {
		m, j := binary.Uvarint(block)
		if j <= 0 || uint64(len(block)-j) < m {
			return nil, nil, errors.New("truncated tick")
		}
		var t tick.Tick
		if err := tick.Unmarshal(block[j:j+int(m)], &t); err != nil {
			return nil, nil, err
		}
		ticks = append(ticks, t)
		block = block[j+int(m):]
	}
	var sigs []loggedSignal
	if err := json.Unmarshal(rest, &sigs); err != nil {
		return nil, nil, err
	}
	return ticks, sigs, nil
}
