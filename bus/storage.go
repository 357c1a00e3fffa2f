package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrStorage marks the embedded broker's data directory as unable to take
// writes: the filesystem is full or read-only, or a log write failed.
var ErrStorage = errors.New("embedded broker storage failing")

// storageGuard keeps the embedded broker from writing to a data directory
// that cannot take it.
//
// kfake answers a produce whose log write fails with UNKNOWN_SERVER_ERROR
// after it has already advanced the producer's sequence window. franz-go
// does not retry that error: it fails every record buffered for the
// partition and bumps the producer epoch. Nothing is duplicated, but the
// records are the caller's to produce again, and a caller doing so races
// its own later records for the pair. So the guard answers first: while
// the filesystem holds less than the headroom beyond a request, is
// read-only, or a log write has failed and a probe write has not yet
// succeeded since, every produce is refused with KAFKA_STORAGE_ERROR before
// kfake looks at it. That error is retriable; franz-go keeps the records
// and retries them in order with their sequence numbers, so per-pair order
// holds and the client's buffer, then the ingest queue, is the
// backpressure. Offset commits are not refused: they are small, and the
// headroom is for them.
type storageGuard struct {
	dir      string
	headroom int64
	every    time.Duration
	log      *slog.Logger
	onChange func(error)

	state   atomic.Pointer[storageState] // nil: healthy
	latched atomic.Pointer[string]       // a log write failed: why
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}

	failing prometheus.Gauge
	refused prometheus.Counter

	closeOnce sync.Once
	mu        sync.Mutex
	reported  *storageState
}

type storageState struct {
	err  error
	kind string // full, read-only, write failed: a change of kind is a state change
}

func newStorageGuard(dir string, headroom int64, every time.Duration, log *slog.Logger, onChange func(error), reg prometheus.Registerer) (*storageGuard, error) {
	g := &storageGuard{
		dir: dir, headroom: headroom, every: every, log: log, onChange: onChange,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tickflow_broker_storage_failing",
			Help: "1 while the embedded broker's data directory cannot take writes (full, read-only, or a write failed) and produce requests are refused with KAFKA_STORAGE_ERROR.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickflow_broker_storage_refused_requests_total",
			Help: "Produce requests the embedded broker refused (retriably) because its data directory could not take them.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{g.failing, g.refused} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("embedded broker metrics: %w", err)
			}
		}
	}
	return g, nil
}

// refuse is the kfake fault filter: it runs on the cluster goroutine for
// every produce request and must not block (one statfs).
func (g *storageGuard) refuse(req kmsg.Request) bool {
	var need int64
	if pr, ok := req.(*kmsg.ProduceRequest); ok {
		for _, t := range pr.Topics {
			for _, p := range t.Partitions {
				need += int64(len(p.Records))
			}
		}
	}
	err, kind := g.check(need)
	g.set(err, kind)
	if err != nil {
		g.refused.Inc()
		return true
	}
	return false
}

// check reports why the data directory cannot take need more bytes now.
func (g *storageGuard) check(need int64) (error, string) {
	if why := g.latched.Load(); why != nil {
		return fmt.Errorf("%w: data dir %s: write failed: %s", ErrStorage, g.dir, *why), "write failed"
	}
	free, ro, ok := fsFree(g.dir)
	switch {
	case !ok:
		return nil, ""
	case ro:
		return fmt.Errorf("%w: data dir %s is on a read-only filesystem", ErrStorage, g.dir), "read-only"
	case free < need+g.headroom:
		return fmt.Errorf("%w: data dir %s is full: %s free, below the %s headroom", ErrStorage, g.dir, size(free), size(g.headroom)), "full"
	}
	return nil, ""
}

// writeFailed latches a failure kfake reported writing its log.
func (g *storageGuard) writeFailed(why string) {
	g.latched.Store(&why)
	g.set(g.check(0))
}

// set records the current state and wakes the reporter on a change.
func (g *storageGuard) set(err error, kind string) {
	old := g.state.Load()
	if (old == nil) == (err == nil) && (old == nil || old.kind == kind) {
		return
	}
	if err == nil {
		g.state.Store(nil)
	} else {
		g.state.Store(&storageState{err, kind})
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Err is the current state: nil when writable.
func (g *storageGuard) Err() error {
	if s := g.state.Load(); s != nil {
		return s.err
	}
	return nil
}

// run re-checks the directory every interval (clearing a latched write
// failure once a probe write succeeds) and reports each change once.
func (g *storageGuard) run() {
	defer close(g.done)
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			if g.latched.Load() != nil && g.probe() == nil {
				g.latched.Store(nil)
			}
			g.set(g.check(0))
		case <-g.kick:
		}
		g.report()
	}
}

func (g *storageGuard) report() {
	st := g.state.Load()
	g.mu.Lock()
	prev := g.reported
	g.reported = st
	g.mu.Unlock()
	if (prev == nil) == (st == nil) && (st == nil || prev.kind == st.kind) {
		return
	}
	var err error
	if st != nil {
		err = st.err
	}
	if err != nil {
		g.failing.Set(1)
		g.log.Error("embedded broker storage failing: refusing produce requests (retriably) until it recovers; ingest holds what it accepted",
			"component", "broker", "err", err)
	} else {
		g.failing.Set(0)
		g.log.Info("embedded broker storage recovered: accepting produce requests again", "component", "broker")
	}
	if g.onChange != nil {
		g.onChange(err)
	}
}

// probe writes and removes a small file in the data directory.
func (g *storageGuard) probe() error {
	f, err := os.CreateTemp(g.dir, ".probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = f.Write(make([]byte, 64<<10))
	err = errors.Join(err, f.Sync(), f.Close())
	return errors.Join(err, os.Remove(filepath.Clean(name)))
}

func (g *storageGuard) close() {
	g.closeOnce.Do(func() { close(g.stop) })
	<-g.done
}

type size int64

func (s size) String() string {
	switch {
	case s >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(s)/(1<<20))
	case s >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(s)/(1<<10))
	}
	return fmt.Sprintf("%d B", int64(s))
}
