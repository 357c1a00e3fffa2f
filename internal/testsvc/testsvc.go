// Package testsvc starts real servers (redis-server, clickhouse-server) for
// tests, on free ports in a temp dir, and tears them down with the test.
//
// A missing binary skips the test loudly; with TICKFLOW_REQUIRE_SERVICES=1
// (set by CI) it fails instead, so CI can never go green by skipping.
package testsvc

import (
	"os"
	"os/exec"
	"testing"

	"github.com/tickflow/tickflow/internal/spawn"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "TICKFLOW_REQUIRE_SERVICES"

// Required reports whether missing services must fail tests.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// NeedBinary returns the path of a binary, or skips (fails when Required)
// with a message naming the Debian package that provides it.
func NeedBinary(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := "SKIP: " + name + " not found on PATH; install the Debian package " + debianPackage +
		" (scripts/test.sh does this) to run this test against a real server"
	if Required() {
		t.Fatalf("%s (%s=1: missing services are failures)", msg, RequireEnv)
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call,
// never one this test binary was handed before.
func FreePort(t testing.TB) int {
	t.Helper()
	ps, err := spawn.FreePorts(1)
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return ps[0]
}

// Addr is "127.0.0.1:port".
func Addr(port int) string { return spawn.Addr(port) }
