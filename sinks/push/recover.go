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

var errTooLarge = errors.New("too large")

// recover reads what a client resuming from since (offsets of epoch)
// missed, for filter f. Its work is bounded by the recovery limits; the
// caller holds the client's live messages meanwhile.
func (s *Sink) recover(f *filter, epoch string, since map[int32]int64) *recoveryResult {
	res, label := s.recoverLog(f, epoch, since)
	s.m.recoveries.WithLabelValues(label).Inc()
	if res.reason == "" {
		s.m.recovered.Add(float64(len(res.ticks)))
	} else {
		s.log.Debug("push: recovery refused", "result", label, "reason", res.reason)
	}
	return res
}

func (s *Sink) recoverLog(f *filter, epoch string, since map[int32]int64) (*recoveryResult, string) {
	fail := func(label, format string, args ...any) (*recoveryResult, string) {
		return &recoveryResult{reason: label + ": " + fmt.Sprintf(format, args...)}, label
	}
	s.posMu.Lock()
	topic, current := s.topic, s.topicID
	s.posMu.Unlock()
	if s.logRd == nil || current == "" {
		return fail("unavailable", "this server cannot replay the tick log")
	}
	if epoch != current {
		return fail("epoch", "the tick topic was created again since this position (epoch %s, now %s); its offsets start over", epoch, current)
	}
	l := s.cfg.Limits
	ctx, cancel := context.WithTimeout(context.Background(), l.RecoveryTimeout)
	defer cancel()
	select {
	case s.recoveries <- struct{}{}:
		defer func() { <-s.recoveries }()
	case <-ctx.Done():
		return fail("busy", "%d recoveries under way for %s", cap(s.recoveries), l.RecoveryTimeout)
	}
	id, start, end, err := s.logRd.Bounds(ctx, topic)
	if err != nil {
		return fail("error", "listing the log: %v", err)
	}
	if id != epoch {
		return fail("epoch", "the tick topic was created again since this position (epoch %s, now %s)", epoch, id)
	}
	res := &recoveryResult{through: map[int32]int64{}}
	from := map[int32]int64{}
	var records int64
	var missing []string
	for p, e := range end {
		pos, ok := since[p]
		switch {
		case !ok && e > start[p]:
			missing = append(missing, fmt.Sprint(p))
			continue
		case !ok:
			pos = e - 1 // an empty partition: nothing to miss
		case pos >= e:
			return fail("bad_position", "partition %d: offset %d is past the log's end %d", p, pos, e)
		}
		res.through[p] = e - 1
		if pos+1 < start[p] {
			res.lost = append(res.lost, lostRange{Partition: p, From: pos + 1, To: start[p] - 1})
		}
		if pos+1 < e {
			from[p] = max(pos+1, start[p])
			records += e - from[p]
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fail("no_position", "no offset for partition %s", strings.Join(missing, ", "))
	}
	if len(res.lost) > 0 {
		sort.Slice(res.lost, func(i, j int) bool { return res.lost[i].Partition < res.lost[j].Partition })
		var n int64
		for _, r := range res.lost {
			n += r.To - r.From + 1
		}
		return &recoveryResult{reason: fmt.Sprintf("trimmed: the broker no longer holds %d records this position needs", n), lost: res.lost}, "trimmed"
	}
	if records > int64(l.MaxRecoveryRecords) {
		return fail("too_large", "%d records to read, more than max_recovery_records %d", records, l.MaxRecoveryRecords)
	}
	if !f.hasChannel(chTick) {
		return res, "recovered"
	}
	parts := map[int32][]*message{}
	var bytesOut int
	var t tick.Tick
	err = s.logRd.ReadRange(ctx, topic, from, end, func(p int32, off int64, key, value []byte) error {
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
		if bytesOut += len(m.data); bytesOut > l.MaxRecoveryBytes {
			return errTooLarge
		}
		parts[p] = append(parts[p], m)
		return nil
	})
	switch {
	case errors.Is(err, errTooLarge):
		return fail("too_large", "the missed ticks exceed max_recovery_bytes %d", l.MaxRecoveryBytes)
	case err != nil:
		return fail("error", "reading the log: %v", err)
	}
	res.ticks = mergeByTime(parts)
	return res, "recovered"
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
