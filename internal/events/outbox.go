package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/sinks"
)

// Outbox holds the events a sink raised and the broker has not yet
// acknowledged. Flush publishes them in order; each leaves the outbox once
// acked, so a failed flush keeps exactly the unpublished ones for the
// retry. It is not safe for concurrent use: the sink's batch lock guards
// it.
//
// When the Publisher is a sinks.BatchPublisher (the bus producer), Flush
// sends everything queued in one round trip instead of one synchronous
// publish per event. Events still leave in order and only once acked: the
// acked prefix leaves, the rest stays. Because records go to partitions by
// key, an event after the first failed one may have been acked all the
// same, and the retry publishes it again. That is safe for what reads the
// topics by ID: every event has a stable ID (the same one a crash replay
// re-raises), and the API's alert and signal feeds (Feed, via
// Recent.AddByTime) keep each ID once. Recent and Acked here still see each
// event once, since they only see the acked prefix. The push sink does not
// dedupe: it forwards each record to browsers as it reads it, so a browser
// may show such an event twice, as it already may after a crash replay.
type Outbox[E any] struct {
	// Topic and Publisher are where events go; Key is each event's record
	// key ("exchange:symbol").
	Topic     string
	Publisher sinks.Publisher
	Key       func(*E) string
	// Errors, if set, counts failed publishes (a failed round trip counts
	// once).
	Errors prometheus.Counter
	// Recent, if set, keeps each event once acked.
	Recent *Recent[E]
	// Acked, if set, is called for each event once acked (a webhook, a
	// log line), after Recent has it.
	Acked func(*E)

	queue []E
}

// maxRoundTrip bounds how many events one PublishAll carries, so a huge
// backlog of events is not encoded all at once.
const maxRoundTrip = 4096

// Add queues events for the next Flush.
func (o *Outbox[E]) Add(es ...E) { o.queue = append(o.queue, es...) }

// Len is how many events wait for the broker.
func (o *Outbox[E]) Len() int { return len(o.queue) }

// Flush publishes the queued events as JSON, in order, and returns nil
// once every one is acked.
func (o *Outbox[E]) Flush(ctx context.Context) error {
	if bp, ok := o.Publisher.(sinks.BatchPublisher); ok {
		return o.flushAll(ctx, bp)
	}
	for len(o.queue) > 0 {
		e := &o.queue[0]
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event for %s: %w", o.Topic, err)
		}
		if err := o.Publisher.Publish(ctx, o.Topic, []byte(o.Key(e)), b); err != nil {
			o.failed()
			return fmt.Errorf("publish to %s: %w", o.Topic, err)
		}
		o.acked(1)
	}
	o.queue = nil
	return nil
}

// flushAll publishes the queue in round trips of up to maxRoundTrip
// events. An event that does not encode stops the flush after the ones
// before it are acked, as the one-by-one path does.
func (o *Outbox[E]) flushAll(ctx context.Context, bp sinks.BatchPublisher) error {
	for len(o.queue) > 0 {
		n := min(len(o.queue), maxRoundTrip)
		keys, values := make([][]byte, 0, n), make([][]byte, 0, n)
		var encErr error
		for i := range n {
			e := &o.queue[i]
			b, err := json.Marshal(e)
			if err != nil {
				encErr = fmt.Errorf("encode event for %s: %w", o.Topic, err)
				break
			}
			keys, values = append(keys, []byte(o.Key(e))), append(values, b)
		}
		if len(values) > 0 {
			acked, err := bp.PublishAll(ctx, o.Topic, keys, values)
			acked = max(0, min(acked, len(values)))
			if err == nil && acked < len(values) {
				err = fmt.Errorf("%d of %d records acked", acked, len(values))
			}
			o.acked(acked)
			if err != nil {
				o.failed()
				return fmt.Errorf("publish to %s: %w", o.Topic, err)
			}
		}
		if encErr != nil {
			return encErr
		}
	}
	o.queue = nil
	return nil
}

// acked hands the first n queued events to Recent and Acked, in order, and
// drops them from the queue.
func (o *Outbox[E]) acked(n int) {
	for i := range n {
		e := &o.queue[i]
		if o.Recent != nil {
			o.Recent.Add(*e)
		}
		if o.Acked != nil {
			o.Acked(e)
		}
	}
	o.queue = o.queue[n:]
}

func (o *Outbox[E]) failed() {
	if o.Errors != nil {
		o.Errors.Inc()
	}
}
