package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings of stdout
		stderr     []string // substrings of stderr
		notStarted bool     // the pipeline must not have started (no config read)
	}{
		{"unknown word", []string{"replya"}, 2, nil, []string{`unknown command "replya"`, "usage: tickflow", "replay"}, true},
		{"help", []string{"help"}, 0, []string{"usage: tickflow", "run", "replay", "backtest", "bench", "version"}, nil, true},
		{"-h", []string{"-h"}, 0, []string{"usage: tickflow", "Commands:"}, nil, true},
		{"help of a command", []string{"help", "replay"}, 0, []string{"usage: tickflow replay", "-topic"}, nil, true},
		{"help of an unknown command", []string{"help", "nope"}, 2, nil, []string{`unknown command "nope"`}, true},
		{"command -h", []string{"backtest", "-h"}, 0, nil, []string{"usage: tickflow backtest", "-strategy"}, true},
		{"version", []string{"version"}, 0, []string{"tickflow ", "revision"}, nil, true},
		{"version with an argument", []string{"version", "x"}, 2, nil, []string{"unexpected argument"}, true},
		{"run with a stray argument", []string{"run", "x"}, 2, nil, []string{"unexpected argument"}, true},
		{"run, missing config", []string{"-config", "/nonexistent/tickflow.yaml"}, 2, nil, []string{"/nonexistent/tickflow.yaml"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			read := false
			getenv := func(string) string { read = true; return "" }
			code := Main(context.Background(), tc.args, IO{Stdout: &out, Stderr: &errOut, Getenv: getenv})
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out.String(), errOut.String())
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut.String())
				}
			}
			if tc.notStarted && read {
				t.Error("the command read the environment: it went on to load a config")
			}
		})
	}
}
