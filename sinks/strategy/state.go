package strategy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/signal"
)

const (
	stateFile    = "strategy.state.json"
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

// saveState writes the snapshot atomically (temp file, rename).
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
	_, werr := f.Write(b)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, stateFile)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

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
