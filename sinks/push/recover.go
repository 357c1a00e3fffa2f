package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/tickflow/tickflow/tick"
)

// Recovery: a client that reconnects sends the position it had reached
// and gets, from the broker's retained log, every tick of its filter it
// missed, before any live one. See protocol.go for the wire side.
//
// In order, on the client's reader goroutine (so only that client waits):
// planRecovery takes one of limits.recovery_concurrency slots and checks
// the position against the log's bounds (a refusal is then a plain
// subscribe with its reason); the client is subscribed, with every hub
// shard locked, and from that instant its live messages are held and a
// live tick at or below where the replay will read to is dropped;
// readRecovery reads the missed ticks up to there; client.resume sends the
// reply, the missed ticks, the new position, then what was held. No tick
// falls between the replay and the live feed: the replay reads to the
// log's end as checked or past the hub's seam at subscribe time,
// whichever is further, and live ticks start after the seam.
//
// Why the broker and not the cache's Redis history: a position is a Kafka
// offset (durable, unique, the same on every instance and across push
// restarts), and the cache's history members are scored by event time,
// which is neither unique nor tied to an offset, so "the ticks after this
// one" cannot be asked of it without guessing at the seam.

// logReader reads the tick topic's retained log (bus.Follower does).
type logReader interface {
	Bounds(ctx context.Context, topic string) (topicID string, start, end map[int32]int64, err error)
	ReadRange(ctx context.Context, topic string, from, to map[int32]int64, fn func(partition int32, offset int64, key, value []byte) error) error
}

// recoveryResult is what a recovery found: the missed ticks (encoded, in
// offset order per partition) and, per partition, the offset through
// which they are complete; or why it could not be done.
type recoveryResult struct {
	ticks   []*message
	through map[int32]int64
	reason  string // "" when recovered
	lost    []lostRange
}

// recoveryPlan is a recovery the broker can serve: what to read from, and
// the log's end when it was checked. It holds a recovery slot until done.
type recoveryPlan struct {
	topic string
	from  map[int32]int64 // first offset to read, for partitions with anything to read
	end   map[int32]int64 // every partition's end offset
	ctx   context.Context
	done  func()
}

var errTooLarge = errors.New("too large")

// refused is a recovery that will not happen, counted by label.
func (s *Sink) refused(label, format string, args ...any) *recoveryResult {
	s.m.recoveries.WithLabelValues(label).Inc()
	reason := label + ": " + fmt.Sprintf(format, args...)
	s.log.Debug("push: recovery refused", "reason", reason)
	return &recoveryResult{reason: reason}
}

// planRecovery checks a client's since (offsets of epoch) against the
// broker's log and takes a recovery slot, or says why not. It runs before
// the client is subscribed: nothing waits for it but the client itself.
func (s *Sink) planRecovery(epoch string, since map[int32]int64) (*recoveryPlan, *recoveryResult) {
	s.posMu.Lock()
	topic, current := s.topic, s.topicID
	s.posMu.Unlock()
	if s.logRd == nil || current == "" {
		return nil, s.refused("unavailable", "this server cannot replay the tick log")
	}
	if epoch != current {
		return nil, s.refused("epoch", "the tick topic was created again since this position (epoch %s, now %s); its offsets start over", epoch, current)
	}
	l := s.cfg.Limits
	ctx, cancel := context.WithTimeout(context.Background(), l.RecoveryTimeout)
	select {
	case s.recoveries <- struct{}{}:
	case <-ctx.Done():
		cancel()
		return nil, s.refused("busy", "%d recoveries under way for %s", cap(s.recoveries), l.RecoveryTimeout)
	}
	plan := &recoveryPlan{topic: topic, from: map[int32]int64{}, ctx: ctx, done: func() { <-s.recoveries; cancel() }}
	res := s.checkPosition(plan, epoch, since)
	if res != nil {
		plan.done()
		return nil, res
	}
	return plan, nil
}

func (s *Sink) checkPosition(plan *recoveryPlan, epoch string, since map[int32]int64) *recoveryResult {
	id, start, end, err := s.logRd.Bounds(plan.ctx, plan.topic)
	if err != nil {
		return s.refused("error", "listing the log: %v", err)
	}
	if id != epoch {
		return s.refused("epoch", "the tick topic was created again since this position (epoch %s, now %s)", epoch, id)
	}
	plan.end = end
	var records int64
	var missing []string
	var lost []lostRange
	for p, e := range end {
		pos, ok := since[p]
		switch {
		case !ok && e > start[p]:
			missing = append(missing, fmt.Sprint(p))
			continue
		case !ok:
			pos = e - 1 // an empty partition: nothing to miss
		case pos >= e:
			return s.refused("bad_position", "partition %d: offset %d is past the log's end %d", p, pos, e)
		}
		if pos+1 < start[p] {
			lost = append(lost, lostRange{Partition: p, From: pos + 1, To: start[p] - 1})
		}
		plan.from[p] = max(pos+1, start[p])
		records += e - plan.from[p]
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return s.refused("no_position", "no offset for partition %s", strings.Join(missing, ", "))
	}
	if len(lost) > 0 {
		sort.Slice(lost, func(i, j int) bool { return lost[i].Partition < lost[j].Partition })
		var n int64
		for _, r := range lost {
			n += r.To - r.From + 1
		}
		res := s.refused("trimmed", "the broker no longer holds %d records this position needs", n)
		res.lost = lost
		return res
	}
	if l := s.cfg.Limits; records > int64(l.MaxRecoveryRecords) {
		return s.refused("too_large", "%d records to read, more than max_recovery_records %d", records, l.MaxRecoveryRecords)
	}
	return nil
}

// recoverRange is where a planned recovery reads to: the log's end as
// checked, or past the hub's seam if the hub has fanned out more since,
// so that the missed ticks and the live ones after the seam meet.
func (plan *recoveryPlan) recoverRange(seams map[int32]int64) (to, through map[int32]int64) {
	to, through = map[int32]int64{}, map[int32]int64{}
	for p, e := range plan.end {
		t := e
		if sm, ok := seams[p]; ok && sm+1 > t {
			t = sm + 1
		}
		to[p], through[p] = t, t-1
	}
	return to, through
}

// readRecovery reads the missed ticks of filter f in [plan.from, to) and
// frees the plan's slot. Bounded by max_recovery_bytes and the plan's
// deadline.
func (s *Sink) readRecovery(plan *recoveryPlan, f *filter, to, through map[int32]int64) *recoveryResult {
	defer plan.done()
	res := &recoveryResult{through: through}
	if !f.hasChannel(chTick) {
		s.m.recoveries.WithLabelValues("recovered").Inc()
		return res
	}
	parts := map[int32][]*message{}
	var bytesOut int
	var t tick.Tick
	limit := s.cfg.Limits.MaxRecoveryBytes
	err := s.logRd.ReadRange(plan.ctx, plan.topic, plan.from, to, func(p int32, off int64, key, value []byte) error {
		s.m.scanned.Inc()
		// The record key is "exchange:symbol": most records of a filtered
		// subscription are skipped without decoding.
		ex, sym, ok := bytes.Cut(key, []byte{':'})
		if ok && !f.matchesPair(string(ex), string(sym)) {
			return nil
		}
		t = tick.Tick{}
		if err := tick.Unmarshal(value, &t); err != nil || t.Exchange == "" || t.Symbol == "" {
			return nil // the runtime counts undecodable records; live never sent it either
		}
		if !f.matchesPair(t.Exchange, t.Symbol) {
			return nil
		}
		m := &message{
			data: encodeTick(make([]byte, 0, 320), &t, p, off), ch: chTick,
			exchange: t.Exchange, symbol: t.Symbol, pair: t.Key(), ts: t.Timestamp,
			positioned: true, part: p, off: off,
		}
		if bytesOut += len(m.data); bytesOut > limit {
			return errTooLarge
		}
		parts[p] = append(parts[p], m)
		return nil
	})
	switch {
	case errors.Is(err, errTooLarge):
		res = s.refused("too_large", "the missed ticks exceed max_recovery_bytes %d", limit)
	case err != nil:
		res = s.refused("error", "reading the log: %v", err)
	default:
		res.ticks = mergeByTime(parts)
		s.m.recoveries.WithLabelValues("recovered").Inc()
		s.m.recovered.Add(float64(len(res.ticks)))
		return res
	}
	// The client's live ticks up to through are gone already (they would
	// have duplicated the replay): the refusal says the gap is there.
	res.through = through
	return res
}

// mergeByTime interleaves partitions' ticks by event time, keeping each
// partition's offset order, so a chart fed the recovery moves forward.
func mergeByTime(parts map[int32][]*message) []*message {
	n := 0
	for _, ms := range parts {
		n += len(ms)
	}
	out := make([]*message, 0, n)
	for len(out) < n {
		var best int32 = -1
		for p, ms := range parts {
			if len(ms) == 0 {
				continue
			}
			if best < 0 || ms[0].ts < parts[best][0].ts || (ms[0].ts == parts[best][0].ts && p < best) {
				best = p
			}
		}
		out = append(out, parts[best][0])
		parts[best] = parts[best][1:]
	}
	return out
}
