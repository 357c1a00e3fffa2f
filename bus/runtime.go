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

// RuntimeConfig configures the consumer that feeds one sink ticks.
type RuntimeConfig = RecordConfig[tick.Tick]

// TradeRuntimeConfig configures the consumer that feeds one sink's trade
// writer (sinks.TradeConsumer) the trades topic.
type TradeRuntimeConfig = RecordConfig[tick.Trade]

// Record is what a runtime can consume: ticks, or trades.
type Record interface{ tick.Tick | tick.Trade }

// RecordSink is the sink contract for records of type T: sinks.Sink for
// ticks, sinks.TradeSink for trades.
type RecordSink[T Record] interface {
	Connect(ctx context.Context) error
	WriteBatch(ctx context.Context, batch []T) error
	Close(ctx context.Context) error
}

// RecordConfig configures the consumer that feeds one sink records of
// type T from one topic.
type RecordConfig[T Record] struct {
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
	Sink  RecordSink[T]
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

// Runtime consumes the tick topic for one sink.
type Runtime = RecordRuntime[tick.Tick]

// TradeRuntime consumes the trades topic for one sink's trade writer, with
// the same guarantees as Runtime.
type TradeRuntime = RecordRuntime[tick.Trade]

// RecordRuntime consumes a topic of records (ticks or trades) in the sink's
// own consumer group, batches by the sink's policy, hands each batch to the
// sink and marks its offsets for commit only once WriteBatch succeeded.
// What follows says "tick" for a record of either kind.
//
// It batches by what is there: a batch is due as soon as it holds the
// policy's Min ticks (by default whatever one poll returned), and while a
// batch is being written (by its own goroutine) the next one is polled and
// decoded, up to the policy's Size; when the write finishes the next batch
// goes at once. One batch is written at a time, so batches, and their
// marks, are in offset order. A failing batch is retried with backoff and
// never skipped; meanwhile nothing more is polled, so the client's bounded
// fetch buffers and one batch are the only buffering and the broker keeps
// the rest. A batch polled behind one that was never written is never
// written either. A crash therefore replays, never skips.
type RecordRuntime[T Record] struct {
	cfg   RecordConfig[T]
	cl    *kgo.Client
	log   *slog.Logger
	clk   clock.Clock
	m     runtimeSinkMetrics
	hname string

	// cur is the batch being filled (by the poll loop only, or by a
	// rebalance callback while the poll loop waits inside PollRecords);
	// spare is a written batch's buffers, for reuse.
	cur, spare *pending[T]
	// names interns decoded exchange and symbol names (take, under mu).
	names tick.Strings
	// failing is set while the batch in flight has failed at least once:
	// the poll loop then stops fetching, so a sink that is down holds one
	// batch, not a growing backlog.
	failing atomic.Bool

	// mu guards next, behind, fl and abandoned: revoke and lost callbacks
	// run on franz-go's goroutines, and flights on their own.
	mu sync.Mutex
	// next is, per owned partition, the offset after the last record
	// fetched; behind is how many records the partition held beyond it
	// when last asked (at a fetch, or from the broker while a batch fails).
	next   map[int32]int64
	behind map[int32]int64
	// fl is the batch being written, nil when none is.
	fl *flight[T]
	// abandoned is set when shutdown stopped waiting for a flight: it must
	// not mark anything afterwards.
	abandoned bool
	adm       *kadm.Client
	opts      []kgo.Opt
	// lastLaunch is when the last batch started writing (the poll loop
	// only), for min_interval.
	lastLaunch time.Time
}

// pending is a batch: the ticks decoded from its records, the position of
// each tick, and every record (undecodable ones too) for the offsets.
type pending[T Record] struct {
	ticks   []T
	pos     []sinks.Position
	records []*kgo.Record
	// expired is set once MaxWait has passed since the first tick.
	expired bool
}

func (b *pending[T]) reset() {
	clear(b.ticks)
	clear(b.records)
	b.ticks, b.pos, b.records, b.expired = b.ticks[:0], b.pos[:0], b.records[:0], false
}

// drop removes the records (and ticks) of the given partitions: they
// belong to another member now, which replays them from the last commit.
func (b *pending[T]) drop(gone map[int32]bool) {
	ticks, pos := b.ticks[:0], b.pos[:0]
	for i := range b.ticks {
		if !gone[b.pos[i].Partition] {
			ticks, pos = append(ticks, b.ticks[i]), append(pos, b.pos[i])
		}
	}
	clear(b.ticks[len(ticks):])
	records := b.records[:0]
	for _, rec := range b.records {
		if !gone[rec.Partition] {
			records = append(records, rec)
		}
	}
	clear(b.records[len(records):])
	b.ticks, b.pos, b.records = ticks, pos, records
}

// flight is a batch being written by its own goroutine. err is set before
// done is closed: nil means written and marked.
type flight[T Record] struct {
	b    *pending[T]
	done chan struct{}
	err  error
}

// NewRuntime builds the consumer of ticks; nothing is fetched until Run.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) { return NewRecordRuntime(cfg) }

// NewTradeRuntime builds the consumer of trades; nothing is fetched until
// Run.
func NewTradeRuntime(cfg TradeRuntimeConfig) (*TradeRuntime, error) { return NewRecordRuntime(cfg) }

// NewRecordRuntime builds the consumer; nothing is fetched until Run.
func NewRecordRuntime[T Record](cfg RecordConfig[T]) (*RecordRuntime[T], error) {
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
	r := &RecordRuntime[T]{
		cfg: cfg, clk: cfg.Clock, log: cfg.Logger.With("sink", cfg.Name),
		m: forSink[T](cfg.Metrics, cfg.Name), hname: "sink:" + cfg.Name,
		next: map[int32]int64{}, behind: map[int32]int64{},
		cur: &pending[T]{}, spare: &pending[T]{},
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
		kgo.OnPartitionsAssigned(r.onAssigned),
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

// onAssigned tells a sinks.PositionWriter where each assigned partition
// resumes: the group's commit, or the log start without one (the reset
// policy). franz-go calls it before it fetches, so before any of their
// ticks reaches the sink. When the broker cannot say, the sink gets an
// assignment without TopicID and must not hand out positions.
func (r *RecordRuntime[T]) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	pw, ok := any(r.cfg.Sink).(sinks.PositionWriter)
	if !ok || len(assigned[r.cfg.Topic]) == 0 {
		return
	}
	a := sinks.Assignment{Topic: r.cfg.Topic}
	// cl, not r.cl: the group may assign before NewClient has returned.
	next, id, err := r.resumeOffsets(ctx, kadm.NewClient(cl), assigned[r.cfg.Topic])
	if err != nil {
		r.log.Warn("resume offsets unknown; the sink gets no positions until the next assignment", "err", err)
	} else {
		a.TopicID, a.Next = id, next
	}
	pw.Assigned(a)
}

func (r *RecordRuntime[T]) resumeOffsets(ctx context.Context, adm *kadm.Client, parts []int32) (map[int32]int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx, r.cfg.Topic)
	if err != nil {
		return nil, "", err
	}
	td, ok := topics[r.cfg.Topic]
	if !ok || td.Err != nil {
		return nil, "", fmt.Errorf("topic %s: not listed (%v)", r.cfg.Topic, td.Err)
	}
	committed, err := adm.FetchOffsets(ctx, r.cfg.Group)
	if err != nil {
		return nil, "", err
	}
	starts, err := adm.ListStartOffsets(ctx, r.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, "", err
	}
	next := make(map[int32]int64, len(parts))
	for _, p := range parts {
		start, ok := starts.Lookup(r.cfg.Topic, p)
		if !ok {
			return nil, "", fmt.Errorf("partition %d: no start offset", p)
		}
		next[p] = start.Offset
		if c, ok := committed.Lookup(r.cfg.Topic, p); ok && c.Err == nil && c.At > start.Offset {
			next[p] = c.At
		}
	}
	return next, td.ID.String(), nil
}

func (r *RecordRuntime[T]) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	// The batch in flight marks its offsets when it is written; wait for
	// it so the commit below includes them. The poll loop is inside
	// PollRecords (rebalances happen only there), so cur is ours to trim.
	r.waitFlight(ctx)
	r.forget(revoked)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		r.log.Warn("commit on revoke failed; the next owner replays from the last commit", "err", err)
	}
	r.log.Info("partitions revoked", "partitions", revoked)
}

func (r *RecordRuntime[T]) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Nothing is committed: another member may already own these. Marks
	// a flight makes later for them are ignored by the client.
	r.forget(lost)
	r.log.Warn("partitions lost", "partitions", lost)
}

// waitFlight waits until no batch is being written, or ctx ends.
func (r *RecordRuntime[T]) waitFlight(ctx context.Context) {
	r.mu.Lock()
	fl := r.fl
	if r.abandoned {
		fl = nil // shutdown gave up on it; it will never mark
	}
	r.mu.Unlock()
	if fl == nil {
		return
	}
	select {
	case <-fl.done:
	case <-ctx.Done():
	}
}

// forget drops what the runtime holds of partitions it no longer owns:
// their place in the lag, and their records in the batch being filled,
// which were never written or marked.
func (r *RecordRuntime[T]) forget(parts map[string][]int32) {
	gone := map[int32]bool{}
	r.mu.Lock()
	for _, ps := range parts {
		for _, p := range ps {
			delete(r.next, p)
			delete(r.behind, p)
			gone[p] = true
		}
	}
	r.cur.drop(gone)
	r.mu.Unlock()
}

// setLag publishes how many records the partitions hold beyond what this
// sink has fetched (the batch in hand is not counted: "0" means everything
// has been polled).
func (r *RecordRuntime[T]) setLag() {
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
func (r *RecordRuntime[T]) refreshLag(ctx context.Context) {
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

// Run consumes until ctx is cancelled, then finishes the batch in flight,
// writes the batch in hand, commits what succeeded and leaves the group.
// It returns nil on a clean shutdown.
func (r *RecordRuntime[T]) Run(ctx context.Context) error {
	// The client is made here, not in NewRuntime, so a runtime that never
	// runs (tickflow failed to start) leaves nothing behind.
	cl, err := kgo.NewClient(r.opts...)
	if err != nil {
		return fmt.Errorf("sink %s: %w", r.cfg.Name, err)
	}
	r.cl, r.adm = cl, kadm.NewClient(cl)
	defer r.cl.CloseAllowingRebalance()
	// A write under way when ctx ends may finish within ShutdownTimeout;
	// ctx ending only stops its retries.
	wctx, wcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer wcancel()
	if err := r.connect(ctx); err != nil {
		return r.shutdown(wcancel, err)
	}
	r.log.Info("sink consuming", "group", r.cfg.Group, "topic", r.cfg.Topic)
	var (
		timer     clock.Timer // max_wait of cur, armed at its first tick
		expired   atomic.Bool
		threshold = r.cfg.Batch.Threshold()
		// gate is armed while cur has reached its threshold but
		// min_interval since the last launch has not passed; it only
		// wakes the poll, due decides.
		gate clock.Timer
	)
	for {
		// A finished flight frees its buffers; a failed one (only when
		// ctx ended) stops everything: what was polled behind it must
		// not be written.
		if fl := r.flight(); fl != nil {
			select {
			case <-fl.done:
				if fl.err != nil {
					return r.shutdown(wcancel, nil)
				}
				r.land(fl)
			default:
			}
		}
		due, n, wait := r.due(threshold, expired.Load())
		if due && r.flight() == nil {
			if timer != nil {
				timer.Stop()
				timer = nil
			}
			if gate != nil {
				gate.Stop()
				gate = nil
			}
			expired.Store(false)
			r.lastLaunch = r.clk.Now()
			r.launch(ctx, wctx)
			continue
		}
		if wait > 0 && gate == nil {
			gate = r.clk.NewTimer(wait)
		}
		if ctx.Err() != nil {
			return r.shutdown(wcancel, nil)
		}
		fl := r.flight()
		if fl != nil && (n >= r.cfg.Batch.Size || r.failing.Load()) {
			// Full, or the sink is failing: stop fetching until the
			// flight lands, so the broker holds the backlog.
			select {
			case <-fl.done:
			case <-ctx.Done():
			}
			continue
		}
		// Poll for more, until records come, max_wait of cur passes or
		// the flight lands (then a due batch can go).
		pollCtx, cancel := context.WithCancel(ctx)
		stopWatch := make(chan struct{})
		var timerC, gateC <-chan time.Time
		if timer != nil {
			timerC = timer.C()
		}
		if gate != nil {
			gateC = gate.C()
		}
		var flDone <-chan struct{}
		if fl != nil {
			flDone = fl.done
		}
		watching := make(chan struct{})
		gated := gate
		if timerC == nil && gateC == nil && flDone == nil {
			close(watching)
		} else {
			go func() {
				defer close(watching)
				select {
				case <-timerC:
					expired.Store(true)
					cancel()
				case <-gateC:
					gated = nil // fired: the next turn re-arms if still needed
					cancel()
				case <-flDone:
					cancel()
				case <-stopWatch:
				}
			}()
		}
		// Rebalances run only between here and PollRecords' return, while
		// the loop is not touching cur.
		r.cl.AllowRebalance()
		fetches := r.cl.PollRecords(pollCtx, r.cfg.Batch.Size-n)
		close(stopWatch)
		<-watching // a timer that fired is recorded before the batch can go
		cancel()
		if gated == nil {
			gate = nil
		}
		if fetches.IsClientClosed() {
			return r.shutdown(wcancel, nil)
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				r.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		if r.take(fetches) && timer == nil && threshold > 1 {
			timer = r.clk.NewTimer(r.cfg.Batch.MaxWait)
			expired.Store(false)
		}
	}
}

// due reports whether the batch being filled should be written now (once
// no other is in flight) and how many records it holds; wait > 0 says it
// has reached its threshold and is held only by min_interval, for wait
// more.
func (r *RecordRuntime[T]) due(threshold int, expired bool) (due bool, n int, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.cur
	if expired {
		b.expired = true
	}
	n = len(b.records)
	if n >= r.cfg.Batch.Size || b.expired || (n > 0 && len(b.ticks) == 0) {
		return true, n, 0
	}
	if len(b.ticks) < threshold {
		return false, n, 0
	}
	if iv := r.cfg.Batch.MinInterval; iv > 0 && !r.lastLaunch.IsZero() {
		if left := iv - r.clk.Now().Sub(r.lastLaunch); left > 0 {
			return false, n, left
		}
	}
	return true, n, 0
}

func (r *RecordRuntime[T]) flight() *flight[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fl
}

// launch hands cur to a new flight and starts filling the spare buffers.
func (r *RecordRuntime[T]) launch(ctx, wctx context.Context) {
	fl := &flight[T]{b: r.cur, done: make(chan struct{})}
	r.mu.Lock()
	r.fl = fl
	r.cur, r.spare = r.spare, nil
	if r.cur == nil {
		r.cur = &pending[T]{}
	}
	r.mu.Unlock()
	go func() {
		defer close(fl.done)
		fl.err = r.writeWithRetry(ctx, wctx, fl.b)
		if fl.err == nil {
			fl.err = r.mark(fl.b.records)
		}
	}()
}

// land retires a finished flight, keeping its buffers for reuse.
func (r *RecordRuntime[T]) land(fl *flight[T]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fl == fl {
		r.fl = nil
	}
	fl.b.reset()
	r.spare = fl.b
}

var errAbandoned = errors.New("runtime stopped waiting for this batch")

// mark marks a written batch's offsets for commit: per partition its last
// record, which marks everything before it (the batch holds each
// partition's records in offset order, after those of earlier batches).
func (r *RecordRuntime[T]) mark(records []*kgo.Record) error {
	last := map[int32]*kgo.Record{}
	for _, rec := range records {
		last[rec.Partition] = rec
	}
	marks := make([]*kgo.Record, 0, len(last))
	for _, rec := range last {
		marks = append(marks, rec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.abandoned {
		return errAbandoned
	}
	r.cl.MarkCommitRecords(marks...)
	return nil
}

// take appends the polled records to the batch being filled; undecodable
// ones are counted and kept only for their offsets. It reports whether the
// batch holds ticks.
func (r *RecordRuntime[T]) take(fs kgo.Fetches) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.cur
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			last := p.Records[len(p.Records)-1]
			r.next[p.Partition] = last.Offset + 1
			r.behind[p.Partition] = p.HighWatermark - last.Offset - 1
		}
		for _, rec := range p.Records {
			b.records = append(b.records, rec)
			var zero T
			b.ticks = append(b.ticks, zero)
			if err := decode(rec.Value, &b.ticks[len(b.ticks)-1], &r.names); err != nil {
				b.ticks = b.ticks[:len(b.ticks)-1]
				r.m.decodeErrors.Inc()
				r.log.Warn("undecodable record skipped", "partition", rec.Partition, "offset", rec.Offset, "err", err)
				continue
			}
			b.pos = append(b.pos, sinks.Position{Partition: rec.Partition, Offset: rec.Offset})
		}
	})
	var lag int64
	for _, n := range r.behind {
		lag += n
	}
	r.m.lag.Set(float64(lag))
	return len(b.ticks) > 0
}

// writeWithRetry writes batch until it succeeds or ctx ends. Each attempt
// runs under wctx, which outlives ctx by the shutdown grace.
func (r *RecordRuntime[T]) writeWithRetry(ctx, wctx context.Context, b *pending[T]) error {
	defer r.failing.Store(false)
	batch := b.ticks
	for attempt := 0; ; attempt++ {
		err := r.write(wctx, b)
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
		r.failing.Store(true)
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

func (r *RecordRuntime[T]) write(ctx context.Context, b *pending[T]) error {
	batch := b.ticks
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	var err error
	pw, ok := any(r.cfg.Sink).(sinks.PositionWriter)
	ticks, isTicks := any(batch).([]tick.Tick) // positions are the tick topic's
	if ok && isTicks {
		err = pw.WriteBatchAt(ctx, ticks, b.pos)
	} else {
		err = r.cfg.Sink.WriteBatch(ctx, batch)
	}
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
		ts, recv := times(&batch[i])
		r.m.latencyEvent.Observe(float64(nowMs-ts) / 1e3)
		if recv > 0 {
			r.m.latencyRecv.Observe(float64(nowUs-recv) / 1e6)
		}
	}
	return nil
}

// decode reads a record's value as a T with the type's own codec.
func decode[T Record](b []byte, dst *T, names *tick.Strings) error {
	switch d := any(dst).(type) {
	case *tick.Tick:
		return tick.UnmarshalInterned(b, d, names)
	case *tick.Trade:
		return tick.UnmarshalTrade(b, d) // syntax only, like ticks: meaning is the sink's to judge
	}
	panic("unreachable: Record is ticks or trades")
}

// times is a record's event time (Unix ms) and receive time (Unix µs).
func times[T Record](v *T) (eventMs, recvUs int64) {
	switch v := any(v).(type) {
	case *tick.Tick:
		return v.Timestamp, v.ReceivedAt
	case *tick.Trade:
		return v.Timestamp, v.ReceivedAt
	}
	panic("unreachable: Record is ticks or trades")
}

func (r *RecordRuntime[T]) connect(ctx context.Context) error {
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
func (r *RecordRuntime[T]) setHealth(err error) bool {
	if r.cfg.Health == nil {
		return false
	}
	return r.cfg.Health.Set(r.hname, err)
}

func (r *RecordRuntime[T]) sleep(ctx context.Context, attempt int) error {
	// Jittered, so sinks do not retry in lockstep.
	return clock.Sleep(ctx, r.clk, backoff.Policy{Min: r.cfg.BackoffMin, Max: r.cfg.BackoffMax}.Delay(attempt))
}

// shutdown lets the batch in flight finish (bounded by ShutdownTimeout,
// after which it is abandoned: not marked even if it succeeds later),
// writes the batch in hand if everything before it was written, commits
// every marked offset and closes the sink.
func (r *RecordRuntime[T]) shutdown(wcancel context.CancelFunc, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
	defer cancel()
	clean := true
	if fl := r.flight(); fl != nil {
		select {
		case <-fl.done:
		case <-ctx.Done():
			r.mu.Lock()
			r.abandoned = true
			r.mu.Unlock()
			wcancel()
		}
		select {
		case <-fl.done:
			clean = fl.err == nil
		default:
			clean = false
		}
		if clean {
			r.land(fl)
		}
	}
	b := r.cur
	switch {
	case !clean && len(b.records) > 0:
		r.log.Warn("batch in flight not written; it and the next are replayed on restart", "ticks", len(b.ticks))
	case len(b.records) > 0:
		if err := r.writeOnce(ctx, b); err != nil {
			r.log.Warn("final batch not written; it will be replayed on restart", "ticks", len(b.ticks), "err", err)
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
func (r *RecordRuntime[T]) writeOnce(ctx context.Context, b *pending[T]) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = r.write(ctx, b); err == nil {
			return r.mark(b.records)
		}
		if ctx.Err() != nil || r.sleep(ctx, attempt) != nil {
			break
		}
	}
	return err
}
