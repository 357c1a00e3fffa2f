package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/health"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// RuntimeConfig configures the consumer that feeds one sink.
type RuntimeConfig struct {
	Client ClientConfig
	Topic  string
	// Group is the sink's consumer group: "tickflow.<sink>" when the
	// instances share it, "tickflow.<sink>.<instance_id>" when each has its
	// own (sinks.Sharing.Group).
	Group string
	// Exclusive gives every partition to one member of the group and none
	// to the others, which stand by (sinks.Exclusive).
	Exclusive bool
	// SessionTimeout is how long the broker waits for a silent member (a
	// killed process) before moving its partitions; RebalanceTimeout is
	// how long members have to finish their batch and rejoin. 45 s and
	// 60 s by default (franz-go's); the broker bounds the session timeout
	// (group.min.session.timeout.ms, 6 s by default).
	SessionTimeout, RebalanceTimeout time.Duration

	Name  string // the sink's name, for logs, metrics and /readyz
	Sink  sinks.Sink
	Batch sinks.BatchPolicy
	Clock clock.Clock
	// BackoffMin and BackoffMax bound the retry delay for Connect and
	// WriteBatch (exponential with jitter); 100 ms and 10 s by default.
	BackoffMin, BackoffMax time.Duration
	// ShutdownTimeout bounds the final flush and commit; 10 s by default.
	ShutdownTimeout time.Duration
	// CommitInterval is how often marked offsets are committed in the
	// background; 500 ms by default. Offsets are also committed on revoke
	// and at shutdown.
	CommitInterval time.Duration
	Logger         *slog.Logger
	Metrics        *RuntimeMetrics
	Health         *health.Registry
}

// Runtime consumes the tick topic in the sink's own consumer group,
// accumulates batches by the sink's policy, hands them to the sink and
// marks their offsets for commit only once WriteBatch succeeded. A failing
// batch is retried with backoff and never skipped; meanwhile nothing is
// polled, so the client's bounded fetch buffers are the only buffering and
// the broker keeps the rest. A crash therefore replays, never skips.
type Runtime struct {
	cfg   RuntimeConfig
	cl    *kgo.Client
	log   *slog.Logger
	clk   clock.Clock
	m     runtimeSinkMetrics
	hname string

	batch   []tick.Tick
	records []*kgo.Record
	// next is, per owned partition, the offset after the last record
	// fetched; behind is how many records the partition held beyond it
	// when last asked (at a fetch, or from the broker while a batch fails).
	// They are guarded by mu: revoke and lost callbacks run on franz-go's
	// goroutines.
	mu     sync.Mutex
	next   map[int32]int64
	behind map[int32]int64
	adm    *kadm.Client
	opts   []kgo.Opt
}

// NewRuntime builds the consumer; nothing is fetched until Run.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if cfg.Sink == nil {
		return nil, errors.New("runtime: nil sink")
	}
	if cfg.Topic == "" || cfg.Group == "" {
		return nil, errors.New("runtime: topic and group are required")
	}
	if err := cfg.Batch.Validate(); err != nil {
		return nil, fmt.Errorf("runtime %s: batch: %w", cfg.Group, err)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Group
	}
	cfg.Clock = clock.OrReal(cfg.Clock)
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewRuntimeMetrics(nil)
	}
	r := &Runtime{
		cfg: cfg, clk: cfg.Clock, log: cfg.Logger.With("sink", cfg.Name),
		m: cfg.Metrics.forSink(cfg.Name), hname: "sink:" + cfg.Name,
		next: map[int32]int64{}, behind: map[int32]int64{},
	}
	opts, err := cfg.Client.opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(250*time.Millisecond),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(cfg.CommitInterval),
		// Rebalances wait until the batch in hand is written and marked,
		// so a revoke commits exactly what succeeded.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(r.onRevoked),
		kgo.OnPartitionsLost(r.onLost),
	)
	if cfg.SessionTimeout > 0 {
		// Heartbeats well inside the session, at franz-go's 3 s at most.
		opts = append(opts, kgo.SessionTimeout(cfg.SessionTimeout), kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/3)))
	}
	if cfg.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(cfg.RebalanceTimeout))
	}
	if cfg.Exclusive {
		opts = append(opts, kgo.Balancers(ExclusiveBalancer()))
	}
	r.opts = opts
	cfg.Health.Register(r.hname, true, "starting")
	return r, nil
}

func (r *Runtime) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		r.log.Warn("commit on revoke failed; the next owner replays from the last commit", "err", err)
	}
	r.forget(revoked)
	r.log.Info("partitions revoked", "partitions", revoked)
}

func (r *Runtime) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Nothing is committed: another member may already own these.
	r.forget(lost)
	r.log.Warn("partitions lost", "partitions", lost)
}

func (r *Runtime) forget(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ps := range parts {
		for _, p := range ps {
			delete(r.next, p)
			delete(r.behind, p)
		}
	}
}

// setLag publishes how many records the partitions hold beyond what this
// sink has fetched (the batch in hand is not counted: "0" means everything
// has been polled).
func (r *Runtime) setLag() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lag int64
	for _, b := range r.behind {
		lag += b
	}
	r.m.lag.Set(float64(lag))
}

// refreshLag asks the broker for the partitions' end offsets, so the lag
// keeps growing while a failing batch stops the runtime from fetching: an
// outage is exactly when an operator looks at it.
func (r *Runtime) refreshLag(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ends, err := r.adm.ListEndOffsets(ctx, r.cfg.Topic)
	if err != nil {
		return // the gauge keeps its last value; the write error is logged already
	}
	r.mu.Lock()
	ends.Each(func(o kadm.ListedOffset) {
		if next, ok := r.next[o.Partition]; ok && o.Err == nil {
			r.behind[o.Partition] = max(o.Offset-next, 0)
		}
	})
	r.mu.Unlock()
	r.setLag()
}

// Run consumes until ctx is cancelled, then writes the batch in hand,
// commits what succeeded and leaves the group. It returns nil on a clean
// shutdown.
func (r *Runtime) Run(ctx context.Context) error {
	// The client is made here, not in NewRuntime, so a runtime that never
	// runs (tickflow failed to start) leaves nothing behind.
	cl, err := kgo.NewClient(r.opts...)
	if err != nil {
		return fmt.Errorf("sink %s: %w", r.cfg.Name, err)
	}
	r.cl, r.adm = cl, kadm.NewClient(cl)
	defer r.cl.CloseAllowingRebalance()
	if err := r.connect(ctx); err != nil {
		return r.shutdown(err)
	}
	r.log.Info("sink consuming", "group", r.cfg.Group, "topic", r.cfg.Topic)
	var (
		timer   clock.Timer
		expired atomic.Bool
	)
	for {
		pollCtx, cancel := context.WithCancel(ctx)
		stopWatch := make(chan struct{})
		if timer != nil {
			go func(c <-chan time.Time) {
				select {
				case <-c:
					expired.Store(true)
					cancel()
				case <-stopWatch:
				}
			}(timer.C())
		}
		fetches := r.cl.PollRecords(pollCtx, r.cfg.Batch.Size-len(r.batch))
		close(stopWatch)
		cancel()
		if fetches.IsClientClosed() {
			return r.shutdown(nil)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		r.take(fetches)
		if len(r.batch) > 0 && timer == nil {
			timer = r.clk.NewTimer(r.cfg.Batch.MaxWait)
			expired.Store(false)
		}
		if ctx.Err() != nil {
			return r.shutdown(nil)
		}
		due := len(r.batch) >= r.cfg.Batch.Size || expired.Load() || (len(r.records) > 0 && len(r.batch) == 0)
		if !due {
			continue
		}
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if err := r.flush(ctx); err != nil {
			return r.shutdown(nil)
		}
		r.cl.AllowRebalance()
	}
}

// take appends the polled records to the batch in hand; undecodable ones
// are counted and kept only for their offsets.
func (r *Runtime) take(fs kgo.Fetches) {
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			last := p.Records[len(p.Records)-1]
			r.mu.Lock()
			r.next[p.Partition] = last.Offset + 1
			r.behind[p.Partition] = p.HighWatermark - last.Offset - 1
			r.mu.Unlock()
		}
		for _, rec := range p.Records {
			r.records = append(r.records, rec)
			r.batch = append(r.batch, tick.Tick{})
			if err := tick.Unmarshal(rec.Value, &r.batch[len(r.batch)-1]); err != nil {
				r.batch = r.batch[:len(r.batch)-1]
				r.m.decodeErrors.Inc()
				r.log.Warn("undecodable record skipped", "partition", rec.Partition, "offset", rec.Offset, "err", err)
			}
		}
	})
	r.setLag()
}

// flush writes the batch in hand until it succeeds or ctx ends, then marks
// its offsets. It returns an error only when ctx ended first, in which case
// nothing was marked.
func (r *Runtime) flush(ctx context.Context) error {
	if err := r.writeWithRetry(ctx, r.batch); err != nil {
		return err
	}
	r.cl.MarkCommitRecords(r.records...)
	clear(r.batch)
	clear(r.records)
	r.batch, r.records = r.batch[:0], r.records[:0]
	return nil
}

func (r *Runtime) writeWithRetry(ctx context.Context, batch []tick.Tick) error {
	for attempt := 0; ; attempt++ {
		err := r.write(ctx, batch)
		if err == nil {
			if attempt > 0 {
				r.log.Info("sink recovered", "attempts", attempt+1)
			}
			r.setHealth(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.m.batches.WithLabelValues("error").Inc()
		if r.setHealth(err) {
			r.log.Error("sink write failing; retrying with backoff, not committing", "err", err, "batch", len(batch))
		}
		r.refreshLag(ctx)
		if errors.Is(err, sinks.ErrNotConnected) {
			if err := r.connect(ctx); err != nil {
				return err
			}
		}
		if err := r.sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

func (r *Runtime) write(ctx context.Context, batch []tick.Tick) error {
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	err := r.cfg.Sink.WriteBatch(ctx, batch)
	if err != nil {
		return err
	}
	now := time.Now()
	r.m.writeSeconds.Observe(now.Sub(start).Seconds())
	r.m.batchSize.Observe(float64(len(batch)))
	r.m.batches.WithLabelValues("ok").Inc()
	r.m.ticks.Add(float64(len(batch)))
	nowMs, nowUs := now.UnixMilli(), now.UnixMicro()
	for i := range batch {
		r.m.latencyEvent.Observe(float64(nowMs-batch[i].Timestamp) / 1e3)
		if batch[i].ReceivedAt > 0 {
			r.m.latencyRecv.Observe(float64(nowUs-batch[i].ReceivedAt) / 1e6)
		}
	}
	return nil
}

func (r *Runtime) connect(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := r.cfg.Sink.Connect(ctx)
		if err == nil {
			r.setHealth(nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.setHealth(fmt.Errorf("connect: %w", err)) {
			r.log.Error("sink connect failing; retrying with backoff", "err", err)
		}
		if err := r.sleep(ctx, attempt); err != nil {
			return err
		}
	}
}

// setHealth records the sink's state and reports whether it changed, so
// failures are logged once per change, not once per attempt.
func (r *Runtime) setHealth(err error) bool {
	if r.cfg.Health == nil {
		return false
	}
	return r.cfg.Health.Set(r.hname, err)
}

func (r *Runtime) sleep(ctx context.Context, attempt int) error {
	// Jittered, so sinks do not retry in lockstep.
	return clock.Sleep(ctx, r.clk, backoff.Policy{Min: r.cfg.BackoffMin, Max: r.cfg.BackoffMax}.Delay(attempt))
}

// shutdown writes the batch in hand (bounded by ShutdownTimeout), commits
// every marked offset and closes the sink.
func (r *Runtime) shutdown(cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	if len(r.batch) > 0 || len(r.records) > 0 {
		if err := r.writeOnce(ctx); err != nil {
			r.log.Warn("final batch not written; it will be replayed on restart", "ticks", len(r.batch), "err", err)
		}
	}
	if err := r.cl.CommitMarkedOffsets(ctx); err != nil {
		r.log.Warn("final commit failed; uncommitted ticks will be replayed on restart", "err", err)
	}
	if err := r.cfg.Sink.Close(ctx); err != nil {
		r.log.Warn("sink close", "err", err)
	}
	r.cl.AllowRebalance()
	r.log.Info("sink stopped")
	if cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("sink %s: %w", r.cfg.Name, cause)
	}
	return nil
}

// writeOnce is the shutdown path: a few quick retries within ctx, then give
// up and leave the batch uncommitted.
func (r *Runtime) writeOnce(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = r.write(ctx, r.batch); err == nil {
			r.cl.MarkCommitRecords(r.records...)
			r.batch, r.records = r.batch[:0], r.records[:0]
			return nil
		}
		if ctx.Err() != nil || r.sleep(ctx, attempt) != nil {
			break
		}
	}
	return err
}
