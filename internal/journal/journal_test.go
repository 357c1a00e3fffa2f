package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	"github.com/tickflow/tickflow/internal/testsvc"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func load(t *testing.T, s *Store) (string, []string) {
	t.Helper()
	snap, recs, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r))
	}
	return string(snap), out
}

func TestAppendSnapshotLoad(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if snap, recs := load(t, s); snap != "" || recs != nil {
		t.Fatalf("fresh store has %q %v", snap, recs)
	}
	for _, r := range []string{"a", "b"} {
		if err := s.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Snapshot([]byte("S1")); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"c", "d"} {
		if err := s.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	snap, recs := load(t, open(t, dir))
	if snap != "S1" || !reflect.DeepEqual(recs, []string{"c", "d"}) {
		t.Fatalf("loaded %q %v", snap, recs)
	}
}

// A crash mid-append leaves a torn record: it is dropped and the file cut,
// so records appended after the restart are found.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	load(t, s)
	for _, r := range []string{"one", "two"} {
		if err := s.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	logPath := filepath.Join(dir, "x.log")
	b, _ := os.ReadFile(logPath)
	for cut := 1; cut < 16+3; cut++ { // every way of tearing the last record
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			if err := os.WriteFile(logPath, b[:len(b)-cut], 0o644); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir)
			if _, recs := load(t, s); !reflect.DeepEqual(recs, []string{"one"}) {
				t.Fatalf("loaded %v", recs)
			}
			if err := s.Append([]byte("three")); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, recs := load(t, open(t, dir)); !reflect.DeepEqual(recs, []string{"one", "three"}) {
				t.Fatalf("after append: %v", recs)
			}
			os.WriteFile(logPath, b, 0o644)
		})
	}
}

func TestCorruptRecordEndsLog(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	load(t, s)
	for _, r := range []string{"one", "two", "three"} {
		s.Append([]byte(r))
	}
	s.Close()
	logPath := filepath.Join(dir, "x.log")
	b, _ := os.ReadFile(logPath)
	b[16+3+16] ^= 0xff // first byte of "two"
	os.WriteFile(logPath, b, 0o644)
	if _, recs := load(t, open(t, dir)); !reflect.DeepEqual(recs, []string{"one"}) {
		t.Fatalf("loaded %v", recs)
	}
}

// Records a snapshot already covers (the log was not emptied before a
// crash) are skipped.
func TestRecordsCoveredBySnapshotAreSkipped(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	load(t, s)
	s.Append([]byte("a"))
	s.Append([]byte("b"))
	logPath := filepath.Join(dir, "x.log")
	before, _ := os.ReadFile(logPath)
	if err := s.Snapshot([]byte("S")); err != nil {
		t.Fatal(err)
	}
	s.Append([]byte("c"))
	s.Close()
	after, _ := os.ReadFile(logPath)
	// Simulate the crash: the old records are still in front of the new one.
	os.WriteFile(logPath, append(before, after...), 0o644)
	if snap, recs := load(t, open(t, dir)); snap != "S" || !reflect.DeepEqual(recs, []string{"c"}) {
		t.Fatalf("loaded %q %v", snap, recs)
	}
}

func TestCorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	load(t, s)
	s.Snapshot([]byte("state"))
	s.Close()
	p := filepath.Join(dir, "x.snap")
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	if _, _, err := open(t, dir).Load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestNeedsSnapshot(t *testing.T) {
	s := open(t, t.TempDir())
	load(t, s)
	if s.NeedsSnapshot() {
		t.Fatal("empty log needs a snapshot")
	}
	big := make([]byte, minLog)
	s.Append(big)
	if !s.NeedsSnapshot() {
		t.Fatal("a log past the minimum does not need a snapshot")
	}
	s.Snapshot([]byte("s"))
	if s.NeedsSnapshot() {
		t.Fatal("still needs one after a snapshot")
	}
	s.broken = true
	if !s.NeedsSnapshot() {
		t.Fatal("a broken log does not force a snapshot")
	}
}

// On a real full filesystem: an append fails and says so, the store asks
// for a snapshot, the snapshot fails too while the disk is full, and once
// space returns the snapshot succeeds and a reload has every record the
// caller saved successfully plus the state the snapshot holds; the torn
// append is gone.
func TestFullDiskAppendFailsThenSnapshotRepairs(t *testing.T) {
	dir := testsvc.Tmpfs(t, 2)
	s, err := Open(dir, "risk")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]byte("one")); err != nil {
		t.Fatal(err)
	}
	testsvc.Fill(t, dir, "ballast")
	big := bytes.Repeat([]byte("x"), 64<<10)
	if err := s.Append(big); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	if !s.NeedsSnapshot() {
		t.Fatal("a failed append did not ask for a snapshot")
	}
	if err := s.Snapshot([]byte("state-with-one-and-big")); err == nil {
		t.Fatal("snapshot succeeded on a full disk")
	}
	if err := os.Remove(filepath.Join(dir, "ballast")); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshot([]byte("state-with-one-and-big")); err != nil {
		t.Fatalf("snapshot after space returned: %v", err)
	}
	if err := s.Append([]byte("two")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r, _ := Open(dir, "risk")
	snap, recs, err := r.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if string(snap) != "state-with-one-and-big" || len(recs) != 1 || string(recs[0]) != "two" {
		t.Fatalf("reload: snapshot %q, records %q", snap, recs)
	}
}
