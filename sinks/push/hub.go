package push

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
)

// message is one outgoing frame, encoded once and shared by every client it
// goes to; nothing mutates it after the hub builds it.
type message struct {
	data     []byte
	ch       channel
	exchange string // "" for events whose key is not a pair
	symbol   string
	// pair is "exchange:symbol": the conflation key of a tick and the
	// shard key of everything.
	pair string
	// ts is a tick's event time (Unix ms): the last-tick map never moves
	// backwards by it.
	ts int64
	// at is when the hub took the message (Unix ns, hub clock).
	at int64
	// recvUS is the tick's ReceivedAt (Unix µs), for the latency metric.
	recvUS int64
	// part and off are a tick's position in the tick topic, when
	// positioned (not for cache seeds, WriteBatch or events).
	positioned bool
	part       int32
	off        int64
}

var errHubClosed = errors.New("hub closed")

// hub fans messages out to subscribed clients. Ticks with a position are
// sharded by partition, everything else by pair: each shard has its own
// goroutine, subscription index and last-tick map behind its own mutex, so
// a partition's ticks reach every client in offset order (what makes a
// client's per-partition position mean "everything before it") and shards
// work in parallel. Subscriptions are replicated into every shard (there are few
// shards, and a wildcard subscription must be seen by all of them).
type hub struct {
	shards []*shard
	m      *metrics
	done   chan struct{}
	wg     sync.WaitGroup
	start  sync.Once
	stop   sync.Once
}

type shard struct {
	mu   sync.Mutex
	subs map[subKey]map[*client]struct{}
	last map[string]*message // pair → newest tick
	// seam is, per partition of this shard, the offset of the last tick
	// fanned out (or the one before where the runtime resumes): a tick at
	// or below it was delivered already and is dropped, so a redelivered
	// batch reaches no client twice.
	seam map[int32]int64
	in   chan shardWork
}

// shardWork is a batch for one shard; done, when set, is closed once the
// shard has fanned out everything sent before it.
type shardWork struct {
	msgs []*message
	done chan struct{}
}

func newHub(shards int, m *metrics) *hub {
	h := &hub{m: m, done: make(chan struct{})}
	for range shards {
		h.shards = append(h.shards, &shard{
			subs: map[subKey]map[*client]struct{}{},
			last: map[string]*message{},
			seam: map[int32]int64{},
			in:   make(chan shardWork, 64),
		})
	}
	return h
}

func (h *hub) run() {
	h.start.Do(func() {
		for _, s := range h.shards {
			h.wg.Add(1)
			go func() {
				defer h.wg.Done()
				s.loop(h)
			}()
		}
	})
}

func (h *hub) close() {
	h.stop.Do(func() { close(h.done) })
	h.wg.Wait()
}

// shardFor is where m goes: its partition's shard for a positioned tick,
// its pair's otherwise.
func (h *hub) shardFor(m *message) int {
	if m.positioned {
		return int(m.part) % len(h.shards)
	}
	return h.shardOf(m.pair)
}

// assign records where the runtime resumes each partition: the offset
// before next is the seam until a tick moves it. A seam never moves back,
// so a rewind redelivers nothing to clients.
func (h *hub) assign(next map[int32]int64) {
	for p, n := range next {
		s := h.shards[int(p)%len(h.shards)]
		s.mu.Lock()
		if old, ok := s.seam[p]; !ok || n-1 > old {
			s.seam[p] = n - 1
		}
		s.mu.Unlock()
	}
}

func (h *hub) shardOf(pair string) int {
	if len(h.shards) == 1 {
		return 0
	}
	// FNV-1a, inline: hash/fnv would allocate per call on this hot path.
	x := uint32(2166136261)
	for i := 0; i < len(pair); i++ {
		x ^= uint32(pair[i])
		x *= 16777619
	}
	return int(x % uint32(len(h.shards)))
}

// dispatch hands messages to their shards and returns once every shard has
// taken its part. It waits only for shard goroutines (CPU), never for a
// client: enqueueing to clients never blocks.
func (h *hub) dispatch(ctx context.Context, msgs []*message) error {
	if len(h.shards) == 1 {
		return h.send(ctx, 0, msgs)
	}
	parts := make([][]*message, len(h.shards))
	for _, m := range msgs {
		i := h.shardFor(m)
		parts[i] = append(parts[i], m)
	}
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		if err := h.send(ctx, i, p); err != nil {
			return err
		}
	}
	return nil
}

func (h *hub) send(ctx context.Context, i int, msgs []*message) error {
	return h.sendWork(ctx, i, shardWork{msgs: msgs})
}

// flush returns once every shard has fanned out what was dispatched before
// the call: what a caller needs before it can say a client got, or did
// not get, a message.
func (h *hub) flush(ctx context.Context) error {
	dones := make([]chan struct{}, len(h.shards))
	for i := range h.shards {
		dones[i] = make(chan struct{})
		if err := h.sendWork(ctx, i, shardWork{done: dones[i]}); err != nil {
			return err
		}
	}
	for _, d := range dones {
		select {
		case <-d:
		case <-h.done:
			return errHubClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (h *hub) sendWork(ctx context.Context, i int, w shardWork) error {
	select {
	case <-h.done:
		return errHubClosed
	default:
	}
	select {
	case h.shards[i].in <- w:
		return nil
	case <-h.done:
		return errHubClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *shard) loop(h *hub) {
	for {
		select {
		case <-h.done:
			return
		case w := <-s.in:
			if w.done != nil {
				close(w.done)
				continue
			}
			s.mu.Lock()
			n := 0
			for _, m := range w.msgs {
				if m.ch == chTick && m.positioned {
					if seam, ok := s.seam[m.part]; ok && m.off <= seam {
						h.m.redelivered.Inc()
						continue
					}
					s.seam[m.part] = m.off
				}
				if m.ch == chTick {
					if old := s.last[m.pair]; old == nil || m.ts >= old.ts {
						s.last[m.pair] = m
					}
				}
				n += s.fanout(m)
			}
			s.mu.Unlock()
			h.m.enqueued.Add(float64(n))
		}
	}
}

// fanout enqueues m to every matching client once, and returns how many.
// A client may match through up to four keys (exact, either wildcard, both
// wildcards); the largest set is walked without checks and the few clients
// of the smaller ones are checked against the sets before them.
func (s *shard) fanout(m *message) int {
	keys := [4]subKey{{m.ch, m.exchange, m.symbol}, {m.ch, "", m.symbol}, {m.ch, m.exchange, ""}, {m.ch, "", ""}}
	var sets [4]map[*client]struct{}
	n := 0
	for i, k := range keys {
		if slices.Contains(keys[:i], k) {
			continue // an event without an exchange or symbol: keys coincide
		}
		if set := s.subs[k]; len(set) > 0 {
			sets[n] = set
			n++
		}
	}
	if n == 0 {
		return 0
	}
	if n > 1 {
		sort.Slice(sets[:n], func(i, j int) bool { return len(sets[i]) > len(sets[j]) })
	}
	delivered := 0
	for i, set := range sets[:n] {
	next:
		for c := range set {
			for _, earlier := range sets[:i] {
				if _, dup := earlier[c]; dup {
					continue next
				}
			}
			c.enqueue(m, m.at)
			delivered++
		}
	}
	return delivered
}

// subscribe registers keys for c in every shard and, with every shard
// locked so no tick can slip in between, calls deliver with the latest
// tick of every pair f matches (seeded from the cache where the hub has
// none newer) and every partition's seam. deliver enqueues the
// "subscribed" reply and the snapshot (or starts a recovery); a live tick
// can only follow them, and is above the seam of its partition.
func (h *hub) subscribe(c *client, keys []subKey, f *filter, seed []*message, deliver func(snapshot []*message, seams map[int32]int64)) {
	for _, s := range h.shards {
		s.mu.Lock()
	}
	defer func() {
		for _, s := range h.shards {
			s.mu.Unlock()
		}
	}()
	seams := map[int32]int64{}
	for _, s := range h.shards {
		for p, o := range s.seam {
			seams[p] = o
		}
	}
	var snap []*message
	if f.hasChannel(chTick) {
		// A pair's newest tick may sit in two shards (with and without a
		// position) and in the cache seed: the newest by event time wins.
		newest := map[string]*message{}
		pick := func(m *message) {
			if old := newest[m.pair]; (old == nil || m.ts > old.ts) && f.matchesPair(m.exchange, m.symbol) {
				newest[m.pair] = m
			}
		}
		for _, s := range h.shards {
			for _, m := range s.last {
				pick(m)
			}
		}
		for _, m := range seed {
			pick(m)
		}
		for _, m := range newest {
			snap = append(snap, m)
		}
		// Stable order for clients and tests: by pair.
		sort.Slice(snap, func(i, j int) bool { return snap[i].pair < snap[j].pair })
	}
	for _, s := range h.shards {
		for _, k := range keys {
			set := s.subs[k]
			if set == nil {
				set = map[*client]struct{}{}
				s.subs[k] = set
			}
			set[c] = struct{}{}
		}
	}
	deliver(snap, seams)
}

// unsubscribe removes keys for c from every shard.
func (h *hub) unsubscribe(c *client, keys []subKey) {
	if len(keys) == 0 {
		return
	}
	for _, s := range h.shards {
		s.mu.Lock()
		for _, k := range keys {
			if set := s.subs[k]; set != nil {
				delete(set, c)
				if len(set) == 0 {
					delete(s.subs, k)
				}
			}
		}
		s.mu.Unlock()
	}
}

// lastTicks returns the hub's newest tick of every pair.
func (h *hub) lastTicks() []*message {
	var out []*message
	for _, s := range h.shards {
		s.mu.Lock()
		for _, m := range s.last {
			out = append(out, m)
		}
		s.mu.Unlock()
	}
	return out
}

// publish fans an event out at once, on the caller's goroutine: events are
// rare, and their publishers must not wait behind a shard's tick queue.
func (h *hub) publish(m *message) {
	s := h.shards[h.shardOf(m.pair)]
	s.mu.Lock()
	n := s.fanout(m)
	s.mu.Unlock()
	h.m.enqueued.Add(float64(n))
}
