package testsvc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Tmpfs mounts a tmpfs of sizeMiB in a new temp directory and unmounts it
// when the test ends: a small real filesystem that fills up. Mounting needs
// root (or CAP_SYS_ADMIN); without it the test is skipped loudly, or fails
// when Required.
func Tmpfs(t testing.TB, sizeMiB int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("SKIP: cannot mount a %d MiB tmpfs for a full-disk test (needs root or CAP_SYS_ADMIN): %v: %s", sizeMiB, err, strings.TrimSpace(string(out)))
		if Required() {
			t.Fatalf("%s (%s=1: missing services are failures)", msg, RequireEnv)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Remount changes a Tmpfs mount's options, e.g. "ro" or "rw".
func Remount(t testing.TB, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

// Fill writes zeros to dir/name until the filesystem is full and returns
// the bytes written. Removing the file frees the space again.
func Fill(t testing.TB, dir, name string) int64 {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n
		}
	}
}
