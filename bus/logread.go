package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Bounds lists what topic's log holds now: its identity (Kafka's topic
// ID) and, per partition, the first retained offset and the offset the
// next record will get. Push checks a browser's position against them
// before recovering what it missed.
func (f Follower) Bounds(ctx context.Context, topic string) (topicID string, start, end map[int32]int64, err error) {
	b, err := f.bounds(ctx, topic)
	return b.TopicID, b.Start, b.End, err
}

type logBounds struct {
	TopicID    string
	Start, End map[int32]int64
}

func (f Follower) bounds(ctx context.Context, topic string) (logBounds, error) {
	opts, err := f.Client.opts()
	if err != nil {
		return logBounds{}, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return logBounds{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return logBounds{}, fmt.Errorf("bounds %s: %w", topic, err)
	}
	td, ok := topics[topic]
	if !ok || td.Err != nil {
		return logBounds{}, fmt.Errorf("bounds %s: topic not listed (%v)", topic, td.Err)
	}
	b := logBounds{TopicID: td.ID.String(), Start: map[int32]int64{}, End: map[int32]int64{}}
	for _, list := range []struct {
		fn  func(context.Context, ...string) (kadm.ListedOffsets, error)
		dst map[int32]int64
	}{{adm.ListStartOffsets, b.Start}, {adm.ListEndOffsets, b.End}} {
		offs, err := list.fn(ctx, topic)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			return logBounds{}, fmt.Errorf("bounds %s: %w", topic, err)
		}
		offs.Each(func(o kadm.ListedOffset) { list.dst[o.Partition] = o.Offset })
	}
	return b, nil
}

// ReadRange calls fn for every record of topic with an offset in
// [from[p], to[p]) for each partition p named in from, in offset order
// within a partition (partitions interleave). It returns when every range
// has been read, fn fails (that error, as is) or ctx ends. fn must not keep
// key or value past its return.
func (f Follower) ReadRange(ctx context.Context, topic string, from, to map[int32]int64, fn func(partition int32, offset int64, key, value []byte) error) error {
	assign := map[int32]kgo.Offset{}
	left := map[int32]int64{} // partition → end offset not yet reached
	for p, o := range from {
		if end := to[p]; o < end {
			assign[p] = kgo.NewOffset().At(o)
			left[p] = end
		}
	}
	if len(assign) == 0 {
		return nil
	}
	opts, err := f.Client.opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		var fnErr error
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || fnErr != nil || r.Offset >= end {
				return
			}
			if fnErr = fn(r.Partition, r.Offset, r.Key, r.Value); fnErr != nil {
				return
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
		if fnErr != nil {
			return fnErr
		}
	}
	return nil
}
