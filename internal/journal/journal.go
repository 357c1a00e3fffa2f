// Package journal keeps a component's state on disk as a snapshot plus an
// append-only log of what happened since, so that saving state costs the
// size of one batch rather than the size of the whole state.
//
// The risk and strategy sinks are deterministic functions of the ticks
// they are fed: each batch appends the ticks it applied (and whatever is
// not deterministic, like a strategy's decisions) as one record; now and
// then the whole state is written as a snapshot and the log starts over.
// Loading returns the snapshot and the records after it, to be replayed.
//
// Records and snapshots carry a sequence number and a CRC. A record torn by
// a crash mid-write is dropped (and the file cut there) on load: the batch
// it belonged to was never acknowledged, so the bus replays it. A snapshot
// is written to a temporary file and renamed into place, and records it
// already covers are skipped on load, so a crash between the rename and
// the log's truncation does no harm. Nothing is fsynced: the files survive
// the process crashing, not the machine (as the embedded broker's log does
// unless it syncs).
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrCorrupt marks a snapshot that exists but cannot be read.
var ErrCorrupt = errors.New("journal: corrupt snapshot")

// minLog is the log size below which no snapshot is forced.
const minLog = 8 << 20

// Store is one component's state files in a directory. It is not safe for
// concurrent use.
type Store struct {
	snapPath, logPath string
	log               *os.File
	logSize, snapSize int64
	seq               uint64 // of the last record or snapshot written or loaded
	broken            bool   // an append failed: the log may end in a torn record
}

// Open prepares dir/name.snap and dir/name.log; call Load before writing.
func Open(dir, name string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Store{snapPath: filepath.Join(dir, name+".snap"), logPath: filepath.Join(dir, name+".log")}, nil
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Load returns the snapshot (nil if none) and the records written after
// it, oldest first, and readies the log for appending. A torn or corrupt
// record ends the log: it and anything after it are cut off.
func (s *Store) Load() (snap []byte, records [][]byte, err error) {
	var snapSeq uint64
	b, err := os.ReadFile(s.snapPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, fmt.Errorf("journal: %w", err)
	default:
		if len(b) < 12 || crc32.Checksum(b[12:], crcTable) != binary.LittleEndian.Uint32(b[8:12]) {
			return nil, nil, fmt.Errorf("%w: %s", ErrCorrupt, s.snapPath)
		}
		snapSeq = binary.LittleEndian.Uint64(b[:8])
		snap = b[12:]
		s.snapSize = int64(len(b))
	}
	s.seq = snapSeq
	f, err := os.OpenFile(s.logPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	var good int64
	hdr := make([]byte, 16)
	for {
		if _, err := io.ReadFull(f, hdr); err != nil {
			break // end, or a torn header
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		seq := binary.LittleEndian.Uint64(hdr[4:12])
		if n > 1<<30 {
			break
		}
		rec := make([]byte, n)
		if _, err := io.ReadFull(f, rec); err != nil || crc32.Checksum(rec, crcTable) != binary.LittleEndian.Uint32(hdr[12:16]) {
			break
		}
		if seq > s.seq {
			if seq != s.seq+1 {
				break // a gap: what follows cannot be trusted
			}
			records = append(records, rec)
			s.seq = seq
		}
		good += 16 + int64(n)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: cut torn tail: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	s.log, s.logSize = f, good
	return snap, records, nil
}

// Append writes one record after those already in the log.
func (s *Store) Append(rec []byte) error {
	if s.log == nil {
		return errors.New("journal: append before Load")
	}
	buf := make([]byte, 16+len(rec))
	binary.LittleEndian.PutUint32(buf[:4], uint32(len(rec)))
	binary.LittleEndian.PutUint64(buf[4:12], s.seq+1)
	binary.LittleEndian.PutUint32(buf[12:16], crc32.Checksum(rec, crcTable))
	copy(buf[16:], rec)
	n, err := s.log.Write(buf)
	if err != nil {
		// The log may now end in part of this record, and a later good
		// record after it would be unreachable: only a snapshot repairs it.
		s.broken = true
		s.logSize += int64(n)
		return fmt.Errorf("journal: append: %w", err)
	}
	s.seq++
	s.logSize += int64(n)
	return nil
}

// NeedsSnapshot reports whether the next save should be a snapshot: the log
// has outgrown the snapshot (replaying it on start would cost more than
// writing one) or an append failed.
func (s *Store) NeedsSnapshot() bool {
	return s.broken || s.logSize > max(minLog, 4*s.snapSize)
}

// Snapshot replaces the state with data, which must reflect every record
// appended so far, and empties the log.
func (s *Store) Snapshot(data []byte) error {
	if s.log == nil {
		return errors.New("journal: snapshot before Load")
	}
	buf := make([]byte, 12+len(data))
	binary.LittleEndian.PutUint64(buf[:8], s.seq)
	binary.LittleEndian.PutUint32(buf[8:12], crc32.Checksum(data, crcTable))
	copy(buf[12:], data)
	f, err := os.CreateTemp(filepath.Dir(s.snapPath), filepath.Base(s.snapPath)+".*.tmp")
	if err != nil {
		return fmt.Errorf("journal: snapshot: %w", err)
	}
	_, werr := f.Write(buf)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("journal: snapshot: %w", err)
	}
	if err := os.Rename(f.Name(), s.snapPath); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("journal: snapshot: %w", err)
	}
	s.snapSize = int64(len(buf))
	// From here the snapshot covers every record in the log; emptying it
	// only saves replay work, so a failure is not an error of the save.
	if err := s.log.Truncate(0); err == nil {
		if _, err := s.log.Seek(0, io.SeekStart); err == nil {
			s.logSize, s.broken = 0, false
		}
	}
	return nil
}

// Close closes the log.
func (s *Store) Close() error {
	if s.log == nil {
		return nil
	}
	err := s.log.Close()
	s.log = nil
	return err
}

// Discard moves a journal's files aside (suffix ".corrupt", kept for a
// post-mortem) and opens an empty journal in their place: for state that
// no longer loads, where starting afresh beats not starting.
func Discard(dir, name string) (*Store, error) {
	for _, ext := range []string{".snap", ".log"} {
		p := filepath.Join(dir, name+ext)
		if err := os.Rename(p, p+".corrupt"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("move bad state aside: %w", err)
		}
	}
	st, err := Open(dir, name)
	if err != nil {
		return nil, err
	}
	if _, _, err := st.Load(); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}
