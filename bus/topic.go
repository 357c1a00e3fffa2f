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
// exists. An existing topic with another count is reported, not changed:
// growing one is GrowTopic's job, asked for explicitly.
func EnsureTopic(ctx context.Context, cc ClientConfig, topic string, partitions int32, replication int16) error {
	adm, done, err := admin(cc)
	if err != nil {
		return err
	}
	defer done()
	if replication == 0 {
		replication = -1
	}
	resp, err := adm.CreateTopic(ctx, partitions, replication, nil, topic)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, kerr.TopicAlreadyExists):
		have, err := partitionCount(ctx, adm, topic)
		if err != nil {
			return err
		}
		if have != int(partitions) && cc.Logger != nil {
			cc.Logger.Info("topic exists with another partition count; using it as is",
				"topic", topic, "have", have, "configured", partitions)
		}
		return nil
	default:
		return fmt.Errorf("create topic %s (%d partitions): %w", topic, resp.NumPartitions, err)
	}
}

// GrowTopic adds partitions to an existing topic that has fewer than asked;
// one that has more is left alone (Kafka cannot remove partitions). Raising
// bus.partitions is how a shared group's capacity grows: one consumer per
// partition at most.
//
// Adding partitions moves keys: a pair hashes to another partition from
// then on, so its ticks from before and after the change sit in different
// partitions and may be consumed out of order across that boundary. The
// sinks judge ticks by event time (docs/ARCHITECTURE.md, "Partitions").
// Running clients see the new partitions at their next metadata refresh.
func GrowTopic(ctx context.Context, cc ClientConfig, topic string, partitions int32) error {
	adm, done, err := admin(cc)
	if err != nil {
		return err
	}
	defer done()
	have, err := partitionCount(ctx, adm, topic)
	if err != nil {
		return err
	}
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
}

func admin(cc ClientConfig) (*kadm.Client, func(), error) {
	opts, err := cc.opts()
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}

func partitionCount(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("topic %s: %w", topic, err)
	}
	d, ok := details[topic]
	if !ok || d.Err != nil {
		return 0, fmt.Errorf("topic %s: not listed (%v)", topic, d.Err)
	}
	return len(d.Partitions), nil
}
