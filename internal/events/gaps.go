package events

import (
	"context"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// GapFeed is the recent gaps the REST API lists, read from tick.GapTopic
// as AlertFeed reads alerts: in any process, whichever one's sources found
// them. It implements api.GapSource.
type GapFeed struct {
	f *feed[tick.Gap]
}

// NewGapFeed follows tick.GapTopic through f, keeping up to capacity gaps.
// Call Run for the life of the process.
func NewGapFeed(f sinks.Follower, capacity int, opt FeedOptions) (*GapFeed, error) {
	fd, err := newFeed(f, tick.GapTopic, capacity, opt, func(g *tick.Gap) string {
		if g.Validate() != nil {
			return ""
		}
		return g.ID()
	}, func(g *tick.Gap) int64 { return g.To }, nil)
	if err != nil {
		return nil, err
	}
	return &GapFeed{fd}, nil
}

// Run follows the topic until ctx ends, then returns nil.
func (g *GapFeed) Run(ctx context.Context) error { return g.f.reader.Run(ctx) }

// RecentGaps are the kept gaps that ended at or after since (Unix ms) on
// exchange ("" for any), in no particular order; the API sorts them.
func (g *GapFeed) RecentGaps(since int64, exchange string) []tick.Gap {
	return g.f.recent.List(func(x *tick.Gap) bool {
		return x.To >= since && (exchange == "" || x.Exchange == exchange)
	})
}
