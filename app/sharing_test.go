package app

import (
	"testing"

	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/cache"
)

// Each sink declares which instances see which ticks; this is the table in
// docs/ARCHITECTURE.md ("Several instances").
func TestSinkSharing(t *testing.T) {
	redis := cache.DefaultConfig()
	redis.Redis.Addrs = []string{"127.0.0.1:6379"}
	for _, tc := range []struct {
		sink string
		cfg  any
		want sinks.Sharing
	}{
		{"store", nil, sinks.Shared},
		{"cache", redis, sinks.Shared},
		{"cache", cache.DefaultConfig(), sinks.PerInstance},
		{"strategy", nil, sinks.Shared},
		{"push", nil, sinks.PerInstance},
		{"risk", nil, sinks.Exclusive},
	} {
		spec, ok := sinks.Lookup(tc.sink)
		if !ok {
			t.Fatalf("%s not compiled in", tc.sink)
		}
		if got := spec.SharingOf(tc.cfg); got != tc.want {
			t.Errorf("%s (%T): %s, want %s", tc.sink, tc.cfg, got, tc.want)
		}
	}
}
