package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopic creates topic with the given partition count unless it exists.
// An existing topic with fewer partitions than asked is reported, not
// changed: adding partitions remaps keys and would break per-pair ordering.
func EnsureTopic(ctx context.Context, cc ClientConfig, topic string, partitions int32, replication int16) error {
	opts, err := cc.opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if replication == 0 {
		replication = -1
	}
	resp, err := adm.CreateTopic(ctx, partitions, replication, nil, topic)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		details, derr := adm.ListTopics(ctx, topic)
		if derr != nil {
			return fmt.Errorf("topic %s: %w", topic, derr)
		}
		if d, ok := details[topic]; ok && len(d.Partitions) < int(partitions) && cc.Logger != nil {
			cc.Logger.Warn("topic has fewer partitions than configured; leaving it as is",
				"topic", topic, "have", len(d.Partitions), "configured", partitions)
		}
		return nil
	default:
		return fmt.Errorf("create topic %s (%d partitions): %w", topic, resp.NumPartitions, err)
	}
}
