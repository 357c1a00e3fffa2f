package bus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tickflow/tickflow/sinks"
)

// An external cluster with SASL: the right credentials, for each mechanism
// tickflow offers, carry ticks end to end; wrong ones fail with an error
// instead of hanging.
func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(mech, "tick", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			good := ClientConfig{Brokers: c.ListenAddrs(), SASL: SASL{Mechanism: mech, Username: "tick", Password: "s3cret"}}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := EnsureTopic(ctx, good, topic, 2, -1); err != nil {
				t.Fatal(err)
			}
			sent := produce(t, good, 2, 5)
			s := newRecSink(0)
			r := runSink(t, good, "tickflow.sasl", s, sinks.BatchPolicy{Size: 100, MaxWait: time.Millisecond}, nil, nil)
			s.waitFor(t, len(sent))
			r.stop(t)
			checkExactlyOnceInOrder(t, sent, s.got)

			bad := good
			bad.SASL.Password = "wrong"
			bctx, bcancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer bcancel()
			if err := EnsureTopic(bctx, bad, "other", 1, -1); err == nil {
				t.Fatal("wrong password accepted")
			}
		})
	}
	if _, err := (ClientConfig{Brokers: []string{"x:1"}, SASL: SASL{Mechanism: "GSSAPI"}}).opts(); err == nil || !strings.Contains(err.Error(), "GSSAPI") {
		t.Fatalf("unknown mechanism: %v", err)
	}
}
