package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/tick"
)

// ProducerOptions configure a Producer.
type ProducerOptions struct {
	Topic string
	// Linger is how long a partition's batch waits for more records
	// before it is sent. 0 sends at once: franz-go still batches
	// whatever accumulates while a produce request is in flight. The
	// configured default (bus.linger) is in config.Default.
	Linger time.Duration
	// Compression is the codec produced batches are compressed with (see
	// Codec); empty means lz4.
	Compression string
	// MaxBuffered bounds records waiting for acks; Produce blocks beyond it,
	// which is the backpressure the ingestors measure.
	MaxBuffered int
	Logger      *slog.Logger
	Metrics     prometheus.Registerer
}

// Producer publishes ticks (and, for strategy and risk, other records) to
// Kafka. It is idempotent with acks=all, so a retried batch is never
// duplicated by the broker.
type Producer struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger

	produced *prometheus.CounterVec
	failed   *prometheus.CounterVec
	// ticksProduced is produced's series for the tick topic, looked up
	// once rather than on every acknowledgement.
	ticksProduced prometheus.Counter

	logFail everyFewSeconds

	mu      sync.Mutex
	lastErr error
}

// NewProducer connects a producer. It does not block on the network.
func NewProducer(cc ClientConfig, o ProducerOptions) (*Producer, error) {
	if o.Topic == "" {
		return nil, errors.New("producer: no topic")
	}
	if o.Linger < 0 {
		return nil, fmt.Errorf("producer: linger %s: must be >= 0", o.Linger)
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 100_000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	codec, err := Codec(o.Compression)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	opts, err := cc.opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(o.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(o.Linger), // 0: no linger
		kgo.MaxBufferedRecords(o.MaxBuffered),
		kgo.ProducerBatchCompression(codec, kgo.NoCompression()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	p := &Producer{
		cl: cl, topic: o.Topic, log: o.Logger,
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_bus_produced_total", Help: "Records acknowledged by the broker, by topic.",
		}, []string{"topic"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickflow_bus_produce_errors_total", Help: "Records the broker did not acknowledge, by topic.",
		}, []string{"topic"}),
	}
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{p.produced, p.failed} {
			if err := o.Metrics.Register(c); err != nil {
				cl.Close()
				return nil, fmt.Errorf("producer metrics: %w", err)
			}
		}
	}
	p.ticksProduced = p.produced.WithLabelValues(o.Topic)
	return p, nil
}

// Codec names a batch compression codec: "none", "lz4" (also for ""),
// "snappy", "zstd" or "gzip". A batch the codec does not shrink goes out
// uncompressed either way.
func Codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "lz4":
		return kgo.Lz4Compression(), nil
	case "none":
		return kgo.NoCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("compression %q is not none, lz4, snappy, zstd or gzip", name)
}

// Produce queues a tick for the tick topic, keyed by pair, and returns once
// the client holds it; it blocks while MaxBuffered records await acks. The
// client retries delivery until it succeeds or the producer is closed;
// Flush waits for every queued tick to be acknowledged. A tick that still
// fails is logged and counted, and reported by the next Err.
func (p *Producer) Produce(ctx context.Context, t *tick.Tick) error {
	return p.ProduceNotify(ctx, t, nil)
}

// ProduceNotify is Produce that also reports the tick's fate. It returns
// an error when the tick was not taken (ctx ended while blocked, client
// closed); then done is never called. When it returns nil, done (if not
// nil) is called exactly once, on the client's promise goroutine: with nil
// once the broker acknowledged the tick, or with the error the client
// gave up on it with (a refusal the client does not retry, such as
// UNKNOWN_SERVER_ERROR, or the client closing). done must not block.
func (p *Producer) ProduceNotify(ctx context.Context, t *tick.Tick, done func(error)) error {
	r := &kgo.Record{
		Key:   t.AppendKey(make([]byte, 0, len(t.Exchange)+len(t.Symbol)+1)),
		Value: t.AppendJSON(make([]byte, 0, 320)),
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The promise runs synchronously when the record could not be buffered
	// (ctx cancelled while blocked, client closed), and could in principle
	// run before Produce returns for a record it did buffer. Whichever of
	// the promise and this function comes second owns the outcome: if the
	// promise came first its error is returned (nil: done is called here).
	const (
		pending = iota
		returned
		promised
	)
	var (
		state atomic.Int32
		perr  error
	)
	p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			p.failed.WithLabelValues(r.Topic).Inc()
			p.setErr(err)
			if ok, suppressed := p.logFail.Allow(); ok {
				p.log.Error("produce failed", "topic", r.Topic, "key", string(r.Key), "err", err, "suppressed", suppressed)
			}
		} else {
			p.ticksProduced.Inc()
		}
		perr = err
		if !state.CompareAndSwap(pending, promised) && done != nil {
			done(err)
		}
	})
	if state.CompareAndSwap(pending, returned) {
		return nil
	}
	if perr == nil && done != nil {
		done(nil)
	}
	return perr
}

// everyFewSeconds allows one event per interval and counts the rest, so a
// broker refusing every record logs a line every few seconds, not one per
// record.
type everyFewSeconds struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (e *everyFewSeconds) Allow() (bool, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < 5*time.Second {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

func (p *Producer) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// Err returns the most recent delivery failure, if any.
func (p *Producer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

// Publish sends one record to topic and waits for the acknowledgement. It
// is for low-rate records (signals, alerts) whose caller must know they are
// durable before committing its own input.
func (p *Producer) Publish(ctx context.Context, topic string, key, value []byte) error {
	res := p.cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: key, Value: value})
	if err := res.FirstErr(); err != nil {
		p.failed.WithLabelValues(topic).Inc()
		return fmt.Errorf("publish to %s: %w", topic, err)
	}
	p.produced.WithLabelValues(topic).Inc()
	return nil
}

// PublishAll sends every record to topic in one ProduceSync and waits for
// all the acknowledgements (sinks.BatchPublisher). It returns how many
// leading records were acked, in the order given, and the error of the
// first that was not. Records go to partitions by key, so one after a
// failed one may still have been acked; the caller's retry of the suffix
// can repeat it on the topic.
func (p *Producer) PublishAll(ctx context.Context, topic string, keys, values [][]byte) (int, error) {
	if len(keys) != len(values) {
		return 0, fmt.Errorf("publish to %s: %d keys for %d values", topic, len(keys), len(values))
	}
	if len(values) == 0 {
		return 0, nil
	}
	recs := make([]kgo.Record, len(values))
	ptrs := make([]*kgo.Record, len(values))
	index := make(map[*kgo.Record]int, len(values))
	for i := range recs {
		recs[i] = kgo.Record{Topic: topic, Key: keys[i], Value: values[i]}
		ptrs[i] = &recs[i]
		index[ptrs[i]] = i
	}
	// ProduceSync's results come in completion order; put them back in ours.
	errs := make([]error, len(values))
	for _, r := range p.cl.ProduceSync(ctx, ptrs...) {
		if i, ok := index[r.Record]; ok {
			errs[i] = r.Err
		}
	}
	acked, failed := len(values), 0
	var first error
	for i, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if first == nil {
			acked, first = i, err
		}
	}
	p.produced.WithLabelValues(topic).Add(float64(len(values) - failed))
	if first != nil {
		p.failed.WithLabelValues(topic).Add(float64(failed))
		return acked, fmt.Errorf("publish to %s: %w", topic, first)
	}
	return acked, nil
}

// Flush waits until every queued record is acknowledged or ctx ends.
func (p *Producer) Flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// Close flushes what it can within ctx and closes the client.
func (p *Producer) Close(ctx context.Context) error {
	err := p.cl.Flush(ctx)
	p.cl.Close()
	return err
}
