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
// retry, and none is published twice by the sink's own retries. It is not
// safe for concurrent use: the sink's batch lock guards it.
type Outbox[E any] struct {
	// Topic and Publisher are where events go; Key is each event's record
	// key ("exchange:symbol").
	Topic     string
	Publisher sinks.Publisher
	Key       func(*E) string
	// Errors, if set, counts failed publishes.
	Errors prometheus.Counter
	// Recent, if set, keeps each event once acked.
	Recent *Recent[E]
	// Acked, if set, is called for each event once acked (a webhook, a
	// log line), after Recent has it.
	Acked func(*E)

	queue []E
}

// Add queues events for the next Flush.
func (o *Outbox[E]) Add(es ...E) { o.queue = append(o.queue, es...) }

// Len is how many events wait for the broker.
func (o *Outbox[E]) Len() int { return len(o.queue) }

// Flush publishes the queued events as JSON, in order, and returns nil
// once every one is acked.
func (o *Outbox[E]) Flush(ctx context.Context) error {
	for len(o.queue) > 0 {
		e := &o.queue[0]
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event for %s: %w", o.Topic, err)
		}
		if err := o.Publisher.Publish(ctx, o.Topic, []byte(o.Key(e)), b); err != nil {
			if o.Errors != nil {
				o.Errors.Inc()
			}
			return fmt.Errorf("publish to %s: %w", o.Topic, err)
		}
		if o.Recent != nil {
			o.Recent.Add(*e)
		}
		if o.Acked != nil {
			o.Acked(e)
		}
		o.queue = o.queue[1:]
	}
	o.queue = nil
	return nil
}
