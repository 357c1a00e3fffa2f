package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tickflow/tickflow/"

// rank places a package in docs/ARCHITECTURE.md's layers: a package may
// import only packages of a strictly lower rank (and never the forbidden
// ones below). -1 means the package is not placed: the test then fails, so
// a new package has to be put on the map.
func rank(pkg string) int {
	switch {
	case pkg == "main" || strings.HasPrefix(pkg, "cmd/"):
		return 10
	case pkg == "cli":
		return 9
	case pkg == "bench":
		return 8
	case pkg == "app":
		return 7
	case pkg == "api":
		return 6
	case pkg == "config" || pkg == "ingest/all" || pkg == "sinks/all" || pkg == "backtest":
		return 5
	case strings.HasPrefix(pkg, "sinks/") || (strings.HasPrefix(pkg, "ingest/") && pkg != "ingest/wsfeed" && pkg != "ingest/wire"):
		return 4
	case pkg == "ingest/wsfeed" || pkg == "bus" || pkg == "replay" || pkg == "internal/events":
		return 3
	case pkg == "ingest" || pkg == "ingest/wire" || pkg == "sinks" || pkg == "internal/wstest":
		return 2
	case pkg == "alert" || pkg == "signal" || pkg == "internal/journal" || pkg == "internal/testkit" || pkg == "internal/testsvc":
		return 1
	case pkg == "tick" || pkg == "instrument" || pkg == "clock" || pkg == "health" || pkg == "web" || pkg == "internal/backoff" ||
		pkg == "internal/registry" || pkg == "internal/loadgen" || pkg == "internal/window" ||
		pkg == "topics" || pkg == "internal/spawn" || pkg == "ingest/wire/wiretest":
		return 0
	}
	return -1
}

// forbidden are imports the ranks alone would allow but the design does
// not: sources hand ticks to the queue, sinks get what they need from
// Env, and the API is handed readers.
func forbidden(pkg, imp string) bool {
	switch {
	case strings.HasPrefix(pkg, "ingest/") && imp == "bus":
		return true
	case strings.HasPrefix(pkg, "sinks/") && pkg != "sinks/all" && (imp == "bus" || imp == "api"):
		return true
	case pkg == "api":
		return imp == "bus" || imp == "config" || imp == "sinks" || strings.HasPrefix(imp, "sinks/") ||
			imp == "ingest" || strings.HasPrefix(imp, "ingest/")
	}
	return false
}

// testKit reports whether pkg is test tooling: helpers that only tests may
// import, so that the shipped binary never links the testing package or
// code written for tests.
func testKit(pkg string) bool {
	switch pkg {
	case "internal/testkit", "internal/testsvc", "internal/wstest", "ingest/wire/wiretest":
		return true
	}
	return false
}

// TestImportRules checks the non-test imports of every package against the
// layers docs/ARCHITECTURE.md describes.
func TestImportRules(t *testing.T) {
	imports := map[string]map[string]bool{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != "." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "node_modules" || n == "docs") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		pkg := filepath.ToSlash(filepath.Dir(path))
		if pkg == "." {
			pkg = "main"
		}
		for _, s := range f.Imports {
			if p, _ := strconv.Unquote(s.Path.Value); p == "testing" && !testKit(pkg) {
				t.Errorf("%s imports testing outside a test file: the shipped binary would link it", path)
			}
		}
		if imports[pkg] == nil {
			imports[pkg] = map[string]bool{}
		}
		for _, s := range f.Imports {
			p, _ := strconv.Unquote(s.Path.Value)
			if strings.HasPrefix(p, module) {
				imports[pkg][strings.TrimPrefix(p, module)] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 10 {
		wd, _ := os.Getwd()
		t.Fatalf("found only %d packages under %s", len(imports), wd)
	}
	for pkg, imps := range imports {
		r := rank(pkg)
		if r < 0 {
			t.Errorf("%s is not placed in docs/ARCHITECTURE.md's layers (imports_test.go rank)", pkg)
			continue
		}
		for imp := range imps {
			switch ri := rank(imp); {
			case ri < 0:
				// reported as the importee's own error
			case ri >= r:
				t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", pkg, r, imp, ri)
			case testKit(imp) && !testKit(pkg):
				t.Errorf("%s imports the test kit %s: production code never does", pkg, imp)
			case forbidden(pkg, imp):
				t.Errorf("%s imports %s, which docs/ARCHITECTURE.md rules out", pkg, imp)
			}
		}
	}
}
