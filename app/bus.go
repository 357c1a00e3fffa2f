package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/topics"
)

// busParts are the broker side of a run: where clients connect, and the
// producer every part publishes through.
type busParts struct {
	client   bus.ClientConfig
	producer *bus.Producer
}

// startBus starts the embedded broker unless external brokers are
// configured, creates the topics, and opens the producer.
func (p *pipeline) startBus(ctx context.Context) error {
	cfg := p.cfg.Bus
	cc, err := ClientConfig(cfg, p.log)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	brokerErr := func() error { return nil }
	if len(cfg.Brokers) == 0 {
		emb, err := bus.StartEmbedded(bus.EmbeddedConfig{
			Listen: cfg.Listen, DataDir: cfg.DataDir, SyncWrites: cfg.SyncWrites, Logger: p.log, Metrics: p.reg,
			// A full or failing data dir makes the broker refuse produce
			// requests retriably: /readyz says so until it recovers.
			OnStorage: func(err error) { p.hr.Set("broker", err) },
		})
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		p.undo.push(func() error {
			emb.Close()
			p.log.Info("broker closed", "component", "broker")
			return nil
		})
		cc.Brokers = emb.Addrs()
		brokerErr = emb.StorageErr
		p.log.Info("started", "component", "broker", "kind", "embedded", "addr", strings.Join(cc.Brokers, ","), "data_dir", cfg.DataDir)
	} else {
		p.log.Info("using external Kafka", "component", "broker", "brokers", strings.Join(cc.Brokers, ","))
	}
	if err := ensureTopics(ctx, cc, cfg); err != nil {
		return err
	}
	p.hr.Set("broker", brokerErr())

	producer, err := bus.NewProducer(cc, bus.ProducerOptions{Topic: cfg.Topic, Linger: cfg.Linger, Compression: cfg.Compression,
		Logger: p.log.With("component", "producer"), Metrics: p.reg})
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	p.undo.push(func() error {
		fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := producer.Close(fctx); err != nil {
			p.log.Error("producer: flush at shutdown incomplete", "component", "producer", "err", err)
			return fmt.Errorf("producer flush: %w", err)
		}
		return nil
	})
	p.bus = &busParts{client: cc, producer: producer}
	return nil
}

// Topics are the topics a run with this bus config creates: the tick topic
// and every side topic.
func Topics(b config.Bus) []string { return append([]string{b.Topic}, topics.Side()...) }

// ensureTopics creates missing topics. bus.partitions raised in the file
// grows the tick topic (only it: the side topics' followers would not see
// new partitions until they restart).
func ensureTopics(ctx context.Context, cc bus.ClientConfig, b config.Bus) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, t := range Topics(b) {
		if err := bus.EnsureTopic(ctx, cc, t, int32(b.Partitions), int16(b.Replication)); err != nil {
			return fmt.Errorf("broker: topic %s: %w", t, err)
		}
	}
	if b.PartitionsSet {
		if err := bus.GrowTopic(ctx, cc, b.Topic, int32(b.Partitions)); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
	}
	return nil
}

// ClientConfig is how every Kafka client of a run connects, from the bus
// section: brokers, client id, SASL and TLS. With no brokers configured
// the caller fills in the embedded broker's (or bus.listen, to reach a
// running tickflow's).
func ClientConfig(b config.Bus, log *slog.Logger) (bus.ClientConfig, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cc := bus.ClientConfig{
		// franz-go logs every group step at info; keep its warnings only.
		Brokers: b.Brokers, ClientID: b.ClientID, Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "kafka"),
		SASL: bus.SASL{Mechanism: b.SASL.Mechanism, Username: b.SASL.Username, Password: b.SASL.Password},
	}
	if b.TLS.Enabled {
		tc, err := bus.TLSFiles(b.TLS.CAFile, b.TLS.CertFile, b.TLS.KeyFile, b.TLS.ServerName, b.TLS.InsecureSkipVerify)
		if err != nil {
			return cc, err
		}
		cc.TLS = tc
	}
	return cc, nil
}
