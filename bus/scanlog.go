package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/tick"
)

// LogQuery selects ticks from a tick topic's retained log.
type LogQuery struct {
	// From and To bound the event time, inclusive; a zero value leaves
	// that side open.
	From, To time.Time
	// Keep, when set, drops the ticks it returns false for.
	Keep func(*tick.Tick) bool
	// Skew is how far before From a record's broker timestamp (the
	// producer's clock, a little after the exchange's event time) may lie
	// and the record still be read; 1 minute by default.
	Skew time.Duration
}

// ScanLog reads the retained log of a tick topic without a consumer group
// and calls fn for every tick whose event time is in the query's range. It
// reads up to each partition's end as listed when it starts, so it ends
// even while producers keep writing. Within a partition, records come in
// log order (so each pair's ticks keep their order); across partitions
// they are merged by event time, which makes the whole stream ordered
// wherever each partition is. Undecodable records are skipped and counted
// in the returned skipped; an error from fn stops the scan and is returned
// as is.
func ScanLog(ctx context.Context, cc ClientConfig, topic string, q LogQuery, fn func(*tick.Tick) error) (skipped int, err error) {
	if q.Skew <= 0 {
		q.Skew = time.Minute
	}
	opts, err := cc.opts()
	if err != nil {
		return 0, err
	}
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, err
	}
	adm := kadm.NewClient(admCl)
	defer admCl.Close()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("scan %s: end offsets: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if q.From.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, q.From.Add(-q.Skew).UnixMilli(), topic)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("scan %s: start offsets: %w", topic, err)
	}
	parts := map[int32]*logPart{}
	assign := map[int32]kgo.Offset{}
	starts.Each(func(o kadm.ListedOffset) {
		end, ok := ends.Lookup(topic, o.Partition)
		start := o.Offset
		if start < 0 { // nothing at or after the time: the end
			start = end.Offset
		}
		if ok && start < end.Offset {
			parts[o.Partition] = &logPart{id: o.Partition, end: end.Offset}
			assign[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(parts) == 0 {
		return 0, nil
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	fromMs, toMs := q.From.UnixMilli(), q.To.UnixMilli()
	for {
		// Emit while every unfinished partition has a tick buffered: the
		// smallest head is then the next in event time.
		for {
			var next *logPart
			waiting := false
			for _, p := range parts {
				if len(p.buf) == 0 {
					if !p.done {
						waiting = true
					}
					continue
				}
				if next == nil || p.buf[0].Timestamp < next.buf[0].Timestamp {
					next = p
				}
			}
			if waiting || next == nil {
				break
			}
			t := &next.buf[0]
			if (q.From.IsZero() || t.Timestamp >= fromMs) && (q.To.IsZero() || t.Timestamp <= toMs) &&
				(q.Keep == nil || q.Keep(t)) {
				if err := fn(t); err != nil {
					return skipped, err
				}
			}
			next.buf[0] = tick.Tick{}
			next.buf = next.buf[1:]
			if next.paused && len(next.buf) < scanBuffered/2 {
				cl.ResumeFetchPartitions(map[string][]int32{topic: {next.id}})
				next.paused = false
			}
		}
		if allDone(parts) {
			return skipped, nil
		}
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return skipped, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return skipped, fmt.Errorf("scan %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			p := parts[r.Partition]
			if p == nil || p.done || r.Offset >= p.end {
				return
			}
			var t tick.Tick
			if err := tick.Unmarshal(r.Value, &t); err != nil {
				skipped++
			} else {
				p.buf = append(p.buf, t)
			}
			if r.Offset+1 >= p.end {
				p.done = true
			}
			if !p.done && !p.paused && len(p.buf) >= scanBuffered {
				// Far ahead of the partition the merge waits for: let the
				// broker hold the rest.
				cl.PauseFetchPartitions(map[string][]int32{topic: {p.id}})
				p.paused = true
			}
		})
	}
}

// scanBuffered bounds the ticks a ScanLog merge holds for one partition.
const scanBuffered = 20_000

// logPart is one partition's state in a ScanLog merge.
type logPart struct {
	id     int32
	end    int64       // offset the scan stops before
	buf    []tick.Tick // decoded, not yet emitted
	done   bool        // every record before end has been fetched
	paused bool        // fetching paused while buf is full
}

func allDone(parts map[int32]*logPart) bool {
	for _, p := range parts {
		if !p.done || len(p.buf) > 0 {
			return false
		}
	}
	return true
}
