package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/clock"
	"github.com/tickflow/tickflow/internal/backoff"
	"github.com/tickflow/tickflow/internal/testkit"
	"github.com/tickflow/tickflow/signal"
)

func TestRecentIsBoundedAndFilters(t *testing.T) {
	r := NewAlerts(3)
	for i, sev := range []alert.Severity{alert.Info, alert.Critical, alert.Warning, alert.Info, alert.Critical} {
		r.Add(alert.Alert{ID: fmt.Sprint(i + 1), Timestamp: int64(i + 1), Severity: sev})
	}
	ids := func(as []alert.Alert) (out []string) {
		for _, a := range as {
			out = append(out, a.ID)
		}
		return out
	}
	if got := ids(r.All()); !reflect.DeepEqual(got, []string{"3", "4", "5"}) {
		t.Fatalf("kept %v, want the newest three oldest first", got)
	}
	for _, tt := range []struct {
		since int64
		min   alert.Severity
		limit int
		want  []string
	}{
		{0, "", 0, []string{"5", "4", "3"}},
		{4, "", 0, []string{"5", "4"}},
		{0, alert.Warning, 0, []string{"5", "3"}},
		{0, "", 1, []string{"5"}},
	} {
		if got := ids(r.RecentAlerts(tt.since, tt.min, tt.limit)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("since %d min %q limit %d: %v, want %v", tt.since, tt.min, tt.limit, got, tt.want)
		}
	}
	r.Reset()
	if l := r.All(); len(l) != 0 {
		t.Fatalf("after Reset: %v", l)
	}

	// Read from a topic's partitions, events arrive out of event-time
	// order: the list is newest first all the same.
	s := NewSignals(10)
	for _, ts := range []int64{3, 1, 2} {
		s.Add(signal.Signal{ID: fmt.Sprint(ts), Strategy: "x", Timestamp: ts})
	}
	s.Add(signal.Signal{ID: "other", Strategy: "y", Timestamp: 9})
	// Full, a list filled by event time keeps the newest, whatever the
	// order they came in.
	byTime := NewSignals(2)
	for _, ts := range []int64{5, 9, 1, 9, 7, 3, 7} { // 9 and 7 twice
		byTime.AddByTime(signal.Signal{ID: fmt.Sprint(ts), Timestamp: ts}, signalTime, func(s *signal.Signal) string { return s.ID })
	}
	var kept []string
	for _, sig := range byTime.RecentSignals("", 0, 0) {
		kept = append(kept, sig.ID)
	}
	if !reflect.DeepEqual(kept, []string{"9", "7"}) {
		t.Fatalf("kept by time %v, want 9 and 7 once each", kept)
	}

	var got []string
	for _, sig := range s.RecentSignals("x", 0, 0) {
		got = append(got, sig.ID)
	}
	if !reflect.DeepEqual(got, []string{"3", "2", "1"}) {
		t.Fatalf("signals of x: %v", got)
	}
}

func TestOutboxKeepsWhatTheBrokerRefused(t *testing.T) {
	pub := &testkit.Publisher{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errs"})
	recent := NewRecent[alert.Alert](10)
	var acked []string
	o := Outbox[alert.Alert]{
		Topic: alert.Topic, Publisher: pub, Key: (*alert.Alert).Key, Errors: errs, Recent: recent,
		Acked: func(a *alert.Alert) { acked = append(acked, a.ID) },
	}
	o.Add(alert.Alert{ID: "a", Exchange: "binance", Symbol: "BTCUSDT"}, alert.Alert{ID: "b", Exchange: "okx", Symbol: "ETHUSDT"})
	pub.FailNext(1)
	if err := o.Flush(context.Background()); !errors.Is(err, testkit.ErrBrokerDown) {
		t.Fatalf("Flush: %v, want the broker's error", err)
	}
	if o.Len() != 2 || len(acked) != 0 || len(recent.All()) != 0 {
		t.Fatalf("after a refused publish: %d queued, acked %v", o.Len(), acked)
	}
	if err := o.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	recs := pub.Records()
	if len(recs) != 2 || recs[0].Key != "binance:BTCUSDT" || recs[1].Key != "okx:ETHUSDT" || recs[0].Topic != alert.Topic {
		t.Fatalf("published %+v", recs)
	}
	var a alert.Alert
	if err := json.Unmarshal(recs[1].Value, &a); err != nil || a.ID != "b" {
		t.Fatalf("value %s: %v", recs[1].Value, err)
	}
	if o.Len() != 0 || !reflect.DeepEqual(acked, []string{"a", "b"}) || len(recent.All()) != 2 {
		t.Fatalf("after the retry: %d queued, acked %v, recent %v", o.Len(), acked, recent.All())
	}
	if v := testkit.Metric(onlyCounter(errs), "errs"); v != 1 {
		t.Fatalf("errors counted %v", v)
	}
}

func onlyCounter(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return reg
}

// sumState is a toy State: the sum of the numbers in its records.
type sumState struct {
	Version int   `json:"version"`
	Sum     int   `json:"sum"`
	Seen    []int `json:"-"`
	resets  int
}

func (s *sumState) Snapshot() (any, error) {
	return &sumState{Version: max(s.Version, 1), Sum: s.Sum}, nil
}
func (s *sumState) Restore(b []byte) error { return json.Unmarshal(b, s) }
func (s *sumState) Replay(rec []byte) error {
	var n int
	if _, err := fmt.Sscan(string(rec), &n); err != nil {
		return err
	}
	s.Sum += n
	return nil
}
func (s *sumState) Reset() error { s.Sum = 0; s.resets++; return nil }

func TestJournalRestoresSnapshotAndReplaysRecords(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Journal, *sumState) {
		st := &sumState{}
		j := &Journal{Dir: dir, Name: "sum", Version: 1, State: st}
		if err := j.Load(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		return j, st
	}
	j, st := open()
	for _, n := range []int{1, 2} {
		st.Sum += n
		if err := j.Save(func() ([]byte, error) { return []byte(fmt.Sprint(n)), nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Snapshot(); err != nil {
		t.Fatal(err)
	}
	st.Sum += 4
	if err := j.Save(func() ([]byte, error) { return []byte("4"), nil }); err != nil {
		t.Fatal(err)
	}
	j.Close()

	j2, st2 := open()
	if !j2.Loaded() || st2.Sum != 7 || st2.resets != 0 {
		t.Fatalf("restored sum %d (resets %d), want 7 from the snapshot's 3 and the logged 4", st2.Sum, st2.resets)
	}
	if err := j2.Load(); err != nil || st2.Sum != 7 {
		t.Fatalf("a second Load is not a no-op: %v, sum %d", err, st2.Sum)
	}
}

func TestJournalStartsAfreshFromUnusableState(t *testing.T) {
	for _, tt := range []struct {
		name string
		prep func(j *Journal)
	}{
		{"another version", func(j *Journal) { j.State.(*sumState).Version = 2; _ = j.Snapshot() }},
		{"a record that does not replay", func(j *Journal) {
			_ = j.Save(func() ([]byte, error) { return []byte("not a number"), nil })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			j := &Journal{Dir: dir, Name: "sum", Version: 1, State: &sumState{}}
			if err := j.Load(); err != nil {
				t.Fatal(err)
			}
			tt.prep(j)
			j.Close()
			reg := prometheus.NewRegistry()
			errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "state_errors"})
			reg.MustRegister(errs)
			st := &sumState{Sum: 99}
			j2 := &Journal{Dir: dir, Name: "sum", Version: 1, State: st, Errors: errs}
			if err := j2.Load(); err != nil {
				t.Fatal(err)
			}
			defer j2.Close()
			if st.resets != 1 || st.Sum != 0 || testkit.Metric(reg, "state_errors") != 1 {
				t.Fatalf("resets %d sum %d errors %v", st.resets, st.Sum, testkit.Metric(reg, "state_errors"))
			}
			matches, _ := filepath.Glob(filepath.Join(dir, "sum.*.corrupt"))
			if len(matches) == 0 {
				entries, _ := os.ReadDir(dir)
				t.Fatalf("bad state not kept aside: %v", entries)
			}
		})
	}
}

func TestJournalWithoutDirKeepsNothing(t *testing.T) {
	j := &Journal{Name: "sum", Version: 1, State: &sumState{}}
	if err := j.Load(); err != nil || !j.Loaded() || j.Enabled() {
		t.Fatalf("Load %v loaded %v enabled %v", err, j.Loaded(), j.Enabled())
	}
	if err := j.Save(func() ([]byte, error) { t.Fatal("record built without a journal"); return nil, nil }); err != nil {
		t.Fatal(err)
	}
}

// A follower that fails is followed again after a backoff on the clock;
// records that do not decode are counted, and logged only when the error
// changes.
func TestReaderRetriesAndCountsUndecodable(t *testing.T) {
	fol := &testkit.Follower{}
	fol.FailNext(2)
	clk := clock.NewFake(time.Unix(0, 0))
	reg := prometheus.NewRegistry()
	bad := prometheus.NewCounter(prometheus.CounterOpts{Name: "bad"})
	reg.MustRegister(bad)
	var got []string
	r := &Reader{
		Follower: fol, Topic: "t", Clock: clk, Undecodable: bad, Backoff: backoff.Policy{Min: time.Second, Max: 4 * time.Second, NoJitter: true},
		Handle: func(key, value []byte) error {
			if string(value) == "bad" {
				return errors.New("bad value")
			}
			got = append(got, string(value))
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for _, d := range []time.Duration{time.Second, 2 * time.Second} { // two failures, doubling
		if !clk.WaitTimersFor(1, 5*time.Second) {
			t.Fatal("no backoff timer after a failed follow")
		}
		clk.Advance(d)
	}
	testkit.Eventually(t, 5*time.Second, "following after the retries", func() bool { return fol.Following("t") == 1 })
	for _, v := range []string{"a", "bad", "bad", "b"} {
		fol.Send("t", "k", []byte(v))
	}
	testkit.Eventually(t, 5*time.Second, "the records handled", func() bool { return testkit.Metric(reg, "bad") == 2 && fol.Following("t") == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("handled %v", got)
	}
}
