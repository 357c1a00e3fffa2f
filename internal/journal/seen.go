package journal

// Seen remembers the IDs a sink published most recently, so a batch replayed
// after a crash publishes none of them twice. It is bounded: the oldest IDs
// are forgotten first. Its List goes into the sink's snapshot, so it
// survives restarts along with the rest of the state.
type Seen struct {
	keys []string
	next int
	set  map[string]struct{}
}

// DefaultSeen is how many IDs the sinks remember.
const DefaultSeen = 4096

// NewSeen returns an empty set remembering up to n IDs.
func NewSeen(n int) *Seen {
	return &Seen{keys: make([]string, 0, n), set: make(map[string]struct{}, n)}
}

// Add records k and reports whether it was new.
func (s *Seen) Add(k string) bool {
	if _, dup := s.set[k]; dup {
		return false
	}
	if len(s.keys) < cap(s.keys) {
		s.keys = append(s.keys, k)
	} else {
		delete(s.set, s.keys[s.next])
		s.keys[s.next] = k
		s.next = (s.next + 1) % len(s.keys)
	}
	s.set[k] = struct{}{}
	return true
}

// List returns the remembered IDs, oldest first.
func (s *Seen) List() []string {
	out := make([]string, 0, len(s.keys))
	out = append(out, s.keys[s.next:]...)
	return append(out, s.keys[:s.next]...)
}
