package journal

import (
	"encoding/binary"
	"errors"

	"github.com/tickflow/tickflow/tick"
)

// AppendTick adds a tick to a block of ticks for a journal record: its
// JSON, prefixed by its length as a uvarint. Sinks that are deterministic
// functions of their ticks log the ticks each batch applied this way and
// replay them on start.
func AppendTick(block []byte, t *tick.Tick) []byte {
	var tmp [512]byte
	js := t.AppendJSON(tmp[:0])
	block = binary.AppendUvarint(block, uint64(len(js)))
	return append(block, js...)
}

// Ticks decodes a block written by AppendTick.
func Ticks(block []byte) ([]tick.Tick, error) {
	var out []tick.Tick
	for len(block) > 0 {
		n, k := binary.Uvarint(block)
		if k <= 0 || uint64(len(block)-k) < n {
			return nil, errors.New("truncated tick in journal record")
		}
		var t tick.Tick
		if err := tick.Unmarshal(block[k:k+int(n)], &t); err != nil {
			return nil, err
		}
		out = append(out, t)
		block = block[k+int(n):]
	}
	return out, nil
}
