package bus

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/tick"
)

// storageChanges records OnStorage calls.
type storageChanges struct {
	mu  sync.Mutex
	got []error
}

func (s *storageChanges) on(err error) {
	s.mu.Lock()
	s.got = append(s.got, err)
	s.mu.Unlock()
}

func (s *storageChanges) list() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.got...)
}

// diskRig is an embedded broker on a 20 MiB tmpfs with the tick topic and
// a producer.
type diskRig struct {
	dir     string
	emb     *Embedded
	cc      ClientConfig
	reg     *prometheus.Registry
	prod    *Producer
	changes *storageChanges
	sent    []tick.Tick
	acked   chan error
}

func newDiskRig(t *testing.T, headroom int64) *diskRig {
	t.Helper()
	dir := testsvc.Tmpfs(t, 20)
	r := &diskRig{dir: dir, reg: prometheus.NewRegistry(), changes: &storageChanges{}, acked: make(chan error, 100_000)}
	emb, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka"),
		Headroom: headroom, StorageCheck: 20 * time.Millisecond, OnStorage: r.changes.on, Metrics: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	r.emb, r.cc = emb, ClientConfig{Brokers: emb.Addrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := EnsureTopic(ctx, r.cc, topic, 4, -1); err != nil {
		t.Fatal(err)
	}
	r.prod, err = NewProducer(r.cc, ProducerOptions{Topic: topic, Metrics: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.prod.Close(ctx)
	})
	return r
}

// send hands n more ticks of three pairs to the producer.
func (r *diskRig) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		i := len(r.sent)
		tk := mkTick(i%3, i/3)
		if err := r.prod.ProduceNotify(context.Background(), &tk, func(err error) { r.acked <- err }); err != nil {
			t.Fatal(err)
		}
		r.sent = append(r.sent, tk)
	}
}

func (r *diskRig) flush(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.prod.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// check reads the topic back: every tick sent, once, in order per pair;
// and every delivery was acknowledged, none refused.
func (r *diskRig) check(t *testing.T) {
	t.Helper()
	close(r.acked)
	n := 0
	for err := range r.acked {
		if err != nil {
			t.Errorf("delivery failed: %v", err)
		}
		n++
	}
	if n != len(r.sent) {
		t.Errorf("%d outcomes for %d ticks", n, len(r.sent))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.emb.Addrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []tick.Tick
	for len(got) < len(r.sent) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d", len(got), len(r.sent))
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var tk tick.Tick
			if err := tick.Unmarshal(rec.Value, &tk); err != nil {
				t.Fatal(err)
			}
			got = append(got, tk)
		})
	}
	checkExactlyOnceInOrder(t, r.sent, got)
}

func TestFullDiskRefusesRetriablyKeepsOrderAndResumes(t *testing.T) {
	r := newDiskRig(t, 0)
	r.send(t, 300)
	r.flush(t)

	ballast := testsvc.Fill(t, r.dir, "ballast")
	r.send(t, 600)
	testkit.Eventually(t, 10*time.Second, "storage reported failing", func() bool { return len(r.changes.list()) == 1 })
	if err := r.emb.StorageErr(); err == nil || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("StorageErr = %v, want the data dir full", err)
	}
	testkit.Eventually(t, 10*time.Second, "produce refused", func() bool {
		return testutil.ToFloat64(r.emb.guard.refused) > 0
	})
	if got := testutil.ToFloat64(r.prod.produced.WithLabelValues(topic)); got != 300 {
		t.Errorf("%v records acknowledged while the disk was full, want the 300 from before", got)
	}

	if err := os.Remove(filepath.Join(r.dir, "ballast")); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d bytes; freed", ballast)
	r.flush(t)
	r.check(t)
	ch := r.changes.list()
	if len(ch) != 2 || ch[0] == nil || ch[1] != nil {
		t.Errorf("OnStorage calls %v, want one failure then one recovery", ch)
	}
	if got := testutil.ToFloat64(r.emb.guard.failing); got != 0 {
		t.Errorf("storage failing gauge = %v after recovery", got)
	}
}

// A data dir mounted read-only cannot be opened by the broker: tickflow
// refuses to start and says why. (A mount cannot turn read-only under the
// broker's open segment files: remount says busy. The kernel can do it on
// I/O errors; the broker's writes then fail, which is the latched case
// below.)
func TestReadOnlyDataDirStopsStartWithTheReason(t *testing.T) {
	dir := testsvc.Tmpfs(t, 4)
	testsvc.Remount(t, dir, "ro")
	emb, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "kafka")})
	if err == nil {
		emb.Close()
		t.Fatal("embedded broker started on a read-only data dir")
	}
	if !strings.Contains(err.Error(), "read-only") {
		t.Errorf("error %q does not say read-only", err)
	}
}

// A log write that fails for a reason statfs does not show (EIO, the
// kernel remounting read-only) is latched from kfake's "persist batch"
// warning: produce is refused retriably until a probe write in the data
// dir succeeds, and the change is reported once each way.
func TestFailedLogWriteIsLatchedUntilAProbeSucceeds(t *testing.T) {
	changes := &storageChanges{}
	emb, err := StartEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: t.TempDir(), StorageCheck: 20 * time.Millisecond, OnStorage: changes.on})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	kfakeLogger{slog.New(slog.DiscardHandler), emb.guard}.Logf(kfake.LogLevelWarn, "persist batch %s-%d: %v", topic, 3, syscall.EIO)
	if err := emb.StorageErr(); err == nil || !strings.Contains(err.Error(), "write failed") || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("StorageErr = %v, want the latched write failure", err)
	}
	if !emb.guard.refuse(&kmsg.ProduceRequest{}) {
		t.Error("produce not refused while a write failure is latched")
	}
	testkit.Eventually(t, 10*time.Second, "probe cleared the latch", func() bool { return emb.StorageErr() == nil })
	testkit.Eventually(t, 10*time.Second, "recovery reported", func() bool { return len(changes.list()) == 2 })
	if ch := changes.list(); ch[0] == nil || ch[1] != nil {
		t.Errorf("OnStorage calls %v, want one failure then one recovery", ch)
	}
}
