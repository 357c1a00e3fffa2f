package bus

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ExclusiveBalancer assigns every partition of the group's topics to one
// member and none to the others, which stand by: the sink sees every tick
// in one place (sinks.Exclusive). The chosen member is the one with the
// smallest member ID, so the choice does not depend on which member leads
// the group; when it leaves or its session times out, the next rebalance
// gives everything to a survivor, which resumes from the group's commit.
func ExclusiveBalancer() kgo.GroupBalancer { return exclusiveBalancer{} }

type exclusiveBalancer struct{}

func (exclusiveBalancer) ProtocolName() string { return "tickflow-exclusive" }
func (exclusiveBalancer) IsCooperative() bool  { return false }

func (exclusiveBalancer) JoinGroupMetadata(interests []string, _ map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 1
	meta.Topics = interests
	meta.Generation = generation
	return meta.AppendTo(nil)
}

func (exclusiveBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return kgo.ParseConsumerSyncAssignment(assignment)
}

func (b exclusiveBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

func (exclusiveBalancer) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := b.NewPlan()
	members := b.Members()
	if len(members) == 0 {
		return plan
	}
	idx := make([]int, len(members))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return members[idx[i]].MemberID < members[idx[j]].MemberID })
	owner, meta := b.MemberAt(idx[0])
	for _, topic := range meta.Topics {
		n, ok := topics[topic]
		if !ok {
			continue
		}
		parts := make([]int32, n)
		for p := range parts {
			parts[p] = int32(p)
		}
		plan.AddPartitions(owner, topic, parts)
	}
	return plan
}
