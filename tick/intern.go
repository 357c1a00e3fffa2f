package tick

// Strings interns the exchange and symbol names a consumer decodes: a
// pipeline sees the same few thousand of them on every tick, and a string
// per field per tick per sink was an allocation each. It holds at most Max
// entries (default 1<<16) and decodes anything past that as a fresh string,
// so a topic full of distinct garbage cannot grow it. Not safe for
// concurrent use: one per decoding goroutine.
type Strings struct {
	Max int
	m   map[string]string
	// last is the name each slot (exchange, symbol, base, quote) decoded
	// last: one exchange and one quote asset are most of a feed, so most
	// names are the previous one and need no map lookup at all.
	last [slotNone]string
}

func (s *Strings) get(b []byte, slot int) string {
	if slot < len(s.last) && s.last[slot] == string(b) && s.last[slot] != "" {
		return s.last[slot]
	}
	v, ok := s.m[string(b)] // no allocation for the lookup
	if !ok {
		if v, ok = interned[string(b)]; !ok {
			v = string(b)
		}
		limit := s.Max
		if limit <= 0 {
			limit = 1 << 16
		}
		if s.m == nil {
			s.m = make(map[string]string)
		}
		if len(s.m) < limit {
			s.m[v] = v
		}
	}
	if slot < len(s.last) {
		s.last[slot] = v
	}
	return v
}

// UnmarshalInterned is Unmarshal taking exchange and symbol names from in.
func UnmarshalInterned(data []byte, t *Tick, in *Strings) error {
	return unmarshal(data, t, in)
}
