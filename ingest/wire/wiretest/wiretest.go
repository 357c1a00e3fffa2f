// Package wiretest holds what every exchange decoder's tests share: the
// documented samples, and the invariants a decoded Frame must keep.
package wiretest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/ingest/wire"
)

// Sample is one line of a shared/exchange-samples .jsonl file.
type Sample struct {
	What    string
	Message []byte
}

// Samples reads a samples file (a testdata copy of
// shared/exchange-samples/<exchange>.jsonl), in file order.
func Samples(t testing.TB, path string) []Sample {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Sample
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var line struct {
			What    string          `json:"what"`
			Message json.RawMessage `json:"message"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		out = append(out, Sample{line.What, line.Message})
	}
	return out
}

// Find returns the message of the first sample whose "what" starts with
// prefix.
func Find(t testing.TB, samples []Sample, prefix string) []byte {
	t.Helper()
	for _, s := range samples {
		if strings.HasPrefix(s.What, prefix) {
			return s.Message
		}
	}
	t.Fatalf("no sample %q", prefix)
	return nil
}

// CheckFrame fails t when f breaks what the connection manager relies on:
// a kind for every accepted frame, valid records only, records only in data
// frames, a reason on every reject.
func CheckFrame(t testing.TB, frame []byte, f *wire.Frame) {
	t.Helper()
	if f.Kind == 0 {
		t.Fatalf("accepted %q with no kind", frame)
	}
	if f.Kind != wire.Data && len(f.Ticks)+len(f.Trades)+len(f.Quotes)+len(f.Rejects) > 0 {
		t.Fatalf("%s frame %q carries records", f.Kind, frame)
	}
	for i := range f.Ticks {
		if err := f.Ticks[i].Validate(); err != nil {
			t.Fatalf("invalid tick %s from %q: %v", f.Ticks[i].AppendJSON(nil), frame, err)
		}
	}
	for i := range f.Trades {
		if err := f.Trades[i].Validate(); err != nil {
			t.Fatalf("invalid trade %s from %q: %v", f.Trades[i].AppendJSON(nil), frame, err)
		}
	}
	for i := range f.Quotes {
		if err := f.Quotes[i].Validate(); err != nil {
			t.Fatalf("invalid quote %+v from %q: %v", f.Quotes[i], frame, err)
		}
	}
	for _, r := range f.Rejects {
		if r.Reason == "" || r.Err == nil {
			t.Fatalf("reject without reason: %+v", r)
		}
	}
}
