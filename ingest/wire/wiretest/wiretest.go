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

// FuzzChecks are what one decoder's fuzz target adds to FuzzDecoder's.
type FuzzChecks struct {
	// NotJSON is a kind the decoder accepts from a frame that is not JSON
	// (OKX's text "pong"); zero: none.
	NotJSON wire.Kind
	// Refused, when set, checks an error the decoder returned.
	Refused func(t *testing.T, err error)
	// Accepted, when set, checks a frame the decoder accepted, after
	// CheckFrame.
	Accepted func(t *testing.T, f *wire.Frame)
}

// FuzzDecoder is every exchange decoder's fuzz target: seeded with the
// samples' messages, the package's documented frames and its bad frames
// shorter than 4 KiB, it requires every frame the decoder accepts to pass
// CheckFrame and to be valid JSON (but for c.NotJSON), plus c's checks.
func FuzzDecoder(f *testing.F, d wire.Decoder, samples []Sample, docs, bad []string, c FuzzChecks) {
	for _, s := range samples {
		f.Add(s.Message)
	}
	for _, s := range docs {
		f.Add([]byte(s))
	}
	for _, b := range bad {
		if len(b) < 4096 {
			f.Add([]byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fr wire.Frame
		if err := d.Decode(frame, 1, &fr); err != nil {
			if c.Refused != nil {
				c.Refused(t, err)
			}
			return
		}
		CheckFrame(t, frame, &fr)
		if (c.NotJSON == 0 || fr.Kind != c.NotJSON) && !json.Valid(frame) {
			t.Fatalf("accepted invalid JSON %q", frame)
		}
		if c.Accepted != nil {
			c.Accepted(t, &fr)
		}
	})
}

// BenchDecoder is the decoder side of every exchange's BenchmarkDecode:
// one frame into a reused Frame, which must decode with no rejects.
func BenchDecoder(b *testing.B, d wire.Decoder, frame []byte) {
	var f wire.Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		f.Reset()
		if err := d.Decode(frame, 1, &f); err != nil || len(f.Rejects) > 0 {
			b.Fatal(err, f.Rejects)
		}
	}
}
