package e2e

import (
	"os"
	"testing"

	"github.com/tickflow/tickflow/config"
)

// FuzzConfig feeds arbitrary YAML to the strict loader (with the real
// sources and sinks compiled into tickflow): it returns
// a config or an error, never panics or hangs. Seeds are the shipped
// config files.
func FuzzConfig(f *testing.F) {
	for _, p := range []string{"../config.yaml", "../config.demo.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"bus: {topicz: x}",
		"sinks: {cache: {enabled: true, batch: {max_wait: fast}}}",
		"ingest: {binance: {enabled: true, symbols: []}}",
		"ingest: {queue: -1}",
		"log: {level: debug, format: json}",
		"a: &a [*a]",
		"bus: !!binary AAAA",
	} {
		f.Add([]byte(s))
	}
	env := func(string) string { return "" }
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = config.Parse(b, env)
	})
}
