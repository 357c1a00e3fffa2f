package bus

import (
	"testing"
	"time"
)

func TestProducerLingerZeroIsAllowedNegativeIsNot(t *testing.T) {
	cc := ClientConfig{Brokers: []string{"127.0.0.1:1"}} // never dialled: NewProducer does not block
	p, err := NewProducer(cc, ProducerOptions{Topic: topic, Linger: 0})
	if err != nil {
		t.Fatalf("linger 0: %v", err)
	}
	p.cl.Close()
	if _, err := NewProducer(cc, ProducerOptions{Topic: topic, Linger: -time.Millisecond}); err == nil {
		t.Fatal("negative linger accepted")
	}
}
