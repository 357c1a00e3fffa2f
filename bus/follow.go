package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Follower reads topics without a consumer group, so every process that
// follows a topic sees every record of it: the fan-out a browser feed needs
// (push on every instance delivers every alert) and what lets a process
// that consumes nothing answer for records raised elsewhere (the API's
// recent alerts and signals). Nothing is committed; a follower that
// restarts starts again from the end.
type Follower struct {
	Client ClientConfig
}

// Follow calls fn for each record of topic, in order within a partition,
// from backfill records before each partition's end (0: only records
// produced from now on), until ctx ends; it then returns nil. fn runs on
// Follow's goroutine and must not keep value past its return.
//
// "From now on" starts once the client has listed the partitions' ends,
// shortly after Follow is called: a record produced in between may be
// missed, which suits live fan-out; a caller that must not miss what was
// produced just before it started asks for a backfill.
func (f Follower) Follow(ctx context.Context, topic string, backfill int, fn func(key, value []byte)) error {
	if topic == "" {
		return errors.New("follow: no topic")
	}
	if backfill < 0 {
		return fmt.Errorf("follow %s: backfill %d < 0", topic, backfill)
	}
	opts, err := f.Client.opts()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd().Relative(-int64(backfill))),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("follow %s: %w", topic, err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if f.Client.Logger != nil && !errors.Is(err, context.Canceled) {
				f.Client.Logger.Warn("follow: fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { fn(r.Key, r.Value) })
	}
}
