package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/internal/journal"
)

// State is a sink's state as Journal keeps it: a snapshot of the whole,
// and records of what each batch applied since, replayed on start.
type State interface {
	// Snapshot returns the whole state, to be stored as JSON. The JSON
	// must carry the state's format in a top-level "version" field.
	Snapshot() (any, error)
	// Restore loads a snapshot whose version matched. An error (wrap
	// ErrBadState for data that does not decode) makes the saved state
	// unusable.
	Restore(snap []byte) error
	// Replay applies one record logged after the snapshot, oldest first.
	// An error makes the saved state unusable.
	Replay(rec []byte) error
	// Reset drops everything restored so far: the saved state was
	// unusable and the sink starts afresh.
	Reset() error
}

// ErrBadState marks saved state that exists but cannot be used.
var ErrBadState = errors.New("unusable saved state")

// Journal keeps a State in a journal under Dir, or nowhere when Dir is
// empty. Load restores it once, before the first batch; Save logs each
// batch, or snapshots the whole state when the log has grown. Unusable
// saved state (a corrupt snapshot, another version, a record that does not
// replay) costs the history, not the sink: it is moved aside (suffix
// ".corrupt") and the sink starts afresh. It is not safe for concurrent
// use: the sink's batch lock guards it.
type Journal struct {
	Dir, Name string
	// Version is the snapshot format State writes; a snapshot of another
	// version is unusable.
	Version int
	State   State
	Logger  *slog.Logger
	// Errors, if set, counts failures to read or write the saved state.
	Errors prometheus.Counter

	store  *journal.Store
	loaded bool
}

// Loaded reports whether Load has succeeded.
func (j *Journal) Loaded() bool { return j.loaded }

// Enabled reports whether the state is saved at all (Dir set).
func (j *Journal) Enabled() bool { return j.Dir != "" }

// Load restores the saved state the first time it succeeds; later calls
// do nothing.
func (j *Journal) Load() error {
	if j.loaded {
		return nil
	}
	if j.Dir == "" {
		j.loaded = true
		return nil
	}
	if err := j.load(); err != nil {
		j.count()
		return err
	}
	j.loaded = true
	return nil
}

func (j *Journal) load() error {
	st, err := journal.Open(j.Dir, j.Name)
	if err != nil {
		return err
	}
	n, err := j.replay(st)
	if err == nil {
		j.store = st
		j.logger().Info(j.Name+": state restored", "replayed_records", n)
		return nil
	}
	st.Close()
	if !errors.Is(err, journal.ErrCorrupt) && !errors.Is(err, ErrBadState) {
		return err
	}
	j.logger().Error(j.Name+": saved state unusable, starting afresh", "err", err, "dir", j.Dir)
	j.count()
	if err := j.State.Reset(); err != nil {
		return err
	}
	j.store, err = journal.Discard(j.Dir, j.Name)
	return err
}

func (j *Journal) replay(st *journal.Store) (int, error) {
	snap, records, err := st.Load()
	if err != nil {
		return 0, err
	}
	if snap != nil {
		var v struct {
			Version int `json:"version"`
		}
		if err := json.Unmarshal(snap, &v); err != nil {
			return 0, fmt.Errorf("%w: snapshot: %v", ErrBadState, err)
		}
		if v.Version != j.Version {
			return 0, fmt.Errorf("%w: snapshot version %d, want %d", ErrBadState, v.Version, j.Version)
		}
		if err := j.State.Restore(snap); err != nil {
			return 0, fmt.Errorf("%w: snapshot: %w", ErrBadState, err)
		}
	}
	for i, rec := range records {
		if err := j.State.Replay(rec); err != nil {
			return 0, fmt.Errorf("%w: record %d: %w", ErrBadState, i, err)
		}
	}
	return len(records), nil
}

// Save logs the record rec returns for a batch that applied something, or
// writes a snapshot instead when the log has outgrown the last one (rec is
// then not called). Without Dir it does nothing.
func (j *Journal) Save(rec func() ([]byte, error)) error {
	if j.store == nil {
		return nil
	}
	var err error
	if j.store.NeedsSnapshot() {
		err = j.Snapshot()
	} else {
		var b []byte
		if b, err = rec(); err == nil {
			err = j.store.Append(b)
		}
	}
	if err != nil {
		j.count()
	}
	return err
}

// Snapshot writes the whole state now and empties the log.
func (j *Journal) Snapshot() error {
	if j.store == nil {
		return nil
	}
	v, err := j.State.Snapshot()
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return j.store.Snapshot(b)
}

// Close closes the journal's files; Load may not be called again.
func (j *Journal) Close() error {
	if j.store == nil {
		return nil
	}
	err := j.store.Close()
	j.store = nil
	return err
}

func (j *Journal) count() {
	if j.Errors != nil {
		j.Errors.Inc()
	}
}

func (j *Journal) logger() *slog.Logger {
	if j.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return j.Logger
}
