package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopic creates topic with the given partition count unless it
// exists, and adds partitions to an existing topic that has fewer: raising
// bus.partitions is how capacity grows (a shared group can use one
// consumer per partition). A topic with more partitions than asked is left
// alone and reported: Kafka cannot remove partitions.
//
// Adding partitions moves keys: a pair hashes to another partition from
// then on, so its ticks from before and after the change sit in different
// partitions and may be consumed out of order across that boundary. The
// sinks judge ticks by event time (docs/ARCHITECTURE.md, "Partitions").
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
		d, ok := details[topic]
		if !ok {
			return fmt.Errorf("topic %s: exists but is not listed", topic)
		}
		have := len(d.Partitions)
		switch {
		case have < int(partitions):
			resp, err := adm.UpdatePartitions(ctx, int(partitions), topic)
			if err == nil {
				err = resp[topic].Err
			}
			if err != nil {
				return fmt.Errorf("topic %s: add partitions %d → %d: %w", topic, have, partitions, err)
			}
			if cc.Logger != nil {
				cc.Logger.Warn("added partitions: pairs that hash elsewhere now may be consumed out of order across the change",
					"topic", topic, "from", have, "to", partitions)
			}
		case have > int(partitions) && cc.Logger != nil:
			cc.Logger.Warn("topic has more partitions than configured; Kafka cannot remove partitions, leaving it as is",
				"topic", topic, "have", have, "configured", partitions)
		}
		return nil
	default:
		return fmt.Errorf("create topic %s (%d partitions): %w", topic, resp.NumPartitions, err)
	}
}
