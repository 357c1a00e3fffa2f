package backoff

import (
	"strings"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	least := func(int64) int64 { return 0 }
	most := func(n int64) int64 { return n - 1 }
	for _, tc := range []struct {
		name     string
		p        Policy
		attempt  int
		min, max time.Duration
	}{
		{"first attempt", Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}, 0, 250 * time.Millisecond, 500 * time.Millisecond},
		{"second attempt doubles", Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}, 1, 500 * time.Millisecond, time.Second},
		{"fifth attempt", Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}, 4, 4 * time.Second, 8 * time.Second},
		{"capped", Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}, 6, 15 * time.Second, 30 * time.Second},
		{"far past the cap", Policy{Min: 500 * time.Millisecond, Max: 30 * time.Second}, 60, 15 * time.Second, 30 * time.Second},
		{"no overflow near the largest duration", Policy{Min: time.Second, Max: 1<<63 - 1}, 200, (1<<63 - 1) / 2, 1<<63 - 1},
		{"no jitter", Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second, NoJitter: true}, 3, 800 * time.Millisecond, 800 * time.Millisecond},
		{"no jitter, capped", Policy{Min: 100 * time.Millisecond, Max: 5 * time.Second, NoJitter: true}, 10, 5 * time.Second, 5 * time.Second},
		{"a nanosecond cannot be halved", Policy{Min: 1, Max: 1}, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := tc.p, tc.p
			lo.Rand, hi.Rand = least, most
			if got := lo.Delay(tc.attempt); got != tc.min {
				t.Errorf("least jitter: %s, want %s", got, tc.min)
			}
			if got := hi.Delay(tc.attempt); got != tc.max {
				t.Errorf("most jitter: %s, want %s", got, tc.max)
			}
			tc.p.Rand = nil // the real source stays within the bounds
			if got := tc.p.Delay(tc.attempt); got < tc.min || got > tc.max {
				t.Errorf("random jitter: %s outside %s..%s", got, tc.min, tc.max)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Min: time.Millisecond, Max: time.Second}, ""},
		{Policy{Min: time.Second, Max: time.Second}, ""},
		{Policy{}, "0 < min <= max"},
		{Policy{Min: 2 * time.Second, Max: time.Second}, "0 < min <= max"},
		{Policy{Min: -time.Second, Max: time.Second}, "0 < min <= max"},
	} {
		err := tc.p.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}
