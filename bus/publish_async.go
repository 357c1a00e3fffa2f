package bus

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PublishAsync queues one record for topic and returns at once, unless the
// client's buffer is full (then it waits for room or ctx). done, if set, is
// called with the broker's answer from the client's goroutine. The client
// keeps key and value until then: the caller must not reuse them. It is
// for side records produced at a rate Publish's round trip per record
// would not keep up with (trades).
func (p *Producer) PublishAsync(ctx context.Context, topic string, key, value []byte, done func(error)) {
	p.cl.Produce(ctx, &kgo.Record{Topic: topic, Key: key, Value: value}, func(_ *kgo.Record, err error) {
		if err != nil {
			p.failed.WithLabelValues(topic).Inc()
			err = fmt.Errorf("publish to %s: %w", topic, err)
		} else {
			p.produced.WithLabelValues(topic).Inc()
		}
		if done != nil {
			done(err)
		}
	})
}
