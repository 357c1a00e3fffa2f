package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickflow/tickflow/instrument"
	"github.com/tickflow/tickflow/internal/testsvc"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/tick"
)

// One clickhouse-server serves the package's tests (each in its own
// database); tests that kill the server start their own.
var (
	sharedOnce sync.Once
	sharedCH   *testsvc.ClickHouse
	sharedErr  error
	sharedDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedCH != nil {
		_ = sharedCH.Kill()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func clickHouse(t testing.TB) *testsvc.ClickHouse {
	t.Helper()
	testsvc.NeedBinary(t, "clickhouse-server", "clickhouse-server")
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "tickflow-store-clickhouse-")
		if sharedErr == nil {
			sharedCH, sharedErr = testsvc.LaunchClickHouse(sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatalf("clickhouse: %v", sharedErr)
	}
	return sharedCH
}

var nonIdent = regexp.MustCompile(`[^A-Za-z0-9_]`)

var (
	dbSeq   atomic.Int64
	dbNames sync.Map // testing.TB → string
)

// testDB is a database name unique to the test and to this run of it, so
// -count=N starts each run on an empty database of the shared server. A
// test asking twice gets the same name.
func testDB(t testing.TB) string {
	if n, ok := dbNames.Load(t); ok {
		return n.(string)
	}
	n := fmt.Sprintf("t_%s_%d", nonIdent.ReplaceAllString(t.Name(), "_"), dbSeq.Add(1))
	actual, _ := dbNames.LoadOrStore(t, n)
	return actual.(string)
}

// testEnv is a sink environment with the test's own metrics registry and
// a logger that writes into buf (nil: discard).
func testEnv(buf *syncBuffer) (sinks.Env, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	if buf != nil {
		log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return sinks.Env{Name: "store", Logger: log, Metrics: reg}, reg
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newSink builds and connects a store sink on the test's own database.
func newSink(t *testing.T, rawURL string, mod func(*Config)) (*Sink, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ClickHouse.URL = rawURL
	cfg.ClickHouse.Database = testDB(t)
	if mod != nil {
		mod(cfg)
	}
	env, reg := testEnv(nil)
	s, err := New(env, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s, reg
}

// sql runs a statement over HTTP with the plain text formats, for checks
// that must not go through the code under test.
func sql(t testing.TB, ch *testsvc.ClickHouse, q string) string {
	t.Helper()
	return sqlWith(t, ch, q, "")
}

// sqlWith is sql with extra URL-encoded settings.
func sqlWith(t testing.TB, ch *testsvc.ClickHouse, q, settings string) string {
	t.Helper()
	u := ch.HTTPURL() + "/?query=" + url.QueryEscape(q)
	if settings != "" {
		u += "&" + settings
	}
	resp, err := http.Post(u, "text/plain", nil)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", q, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

// mkTick is a tick of pair ex:sym at ts (ms) with the given price; the
// other decimals are edge cases of their own (negative, zero, the largest
// value, 18 places, trailing zeros).
// Its instrument is what the ingest pump would give it: set when the
// symbol resolves, empty when it does not (as in records from before the
// instrument columns).
func mkTick(ex, sym string, ts int64, price string) tick.Tick {
	t := tick.Tick{Exchange: ex, Symbol: sym, Timestamp: ts, ReceivedAt: ts*1000 + 7}
	if in, err := instrument.Resolve(ex, sym); err == nil {
		t.Base, t.Quote = in.Base, in.Quote
	}
	t.Price = tick.MustDecimal(price)
	t.Bid = tick.MustDecimal("-" + price)
	t.Ask = tick.MustDecimal("0.50")
	t.Volume = tick.MustDecimal("123456.000000000000000001")
	t.Open24h = tick.MustDecimal("99999999999999999999.999999999999999999")
	t.High24h = tick.MustDecimal("-0.5000")
	t.Low24h = tick.MustDecimal("0.00")
	t.QuoteVolume = tick.MustDecimal(fmt.Sprintf("%d.%018d", ts, ts%1000))
	return t
}

// sameTick compares every field, decimals to the representation (the
// same coefficient and exponent, hence the same text: "50100.00" is not
// "50100"), and then the JSON the API would serve, byte for byte.
func sameTick(a, b *tick.Tick) error {
	if a.Exchange != b.Exchange || a.Symbol != b.Symbol || a.Timestamp != b.Timestamp || a.ReceivedAt != b.ReceivedAt {
		return fmt.Errorf("identity %s@%d/%d != %s@%d/%d", a.Key(), a.Timestamp, a.ReceivedAt, b.Key(), b.Timestamp, b.ReceivedAt)
	}
	if a.Base != b.Base || a.Quote != b.Quote {
		return fmt.Errorf("%s@%d instrument %q/%q != %q/%q", a.Key(), a.Timestamp, a.Base, a.Quote, b.Base, b.Quote)
	}
	for _, f := range decimalFields {
		x, y := f.get(a), f.get(b)
		if !same(x, y) {
			return fmt.Errorf("%s@%d %s: %s != %s", a.Key(), a.Timestamp, f.name, x.Text('f'), y.Text('f'))
		}
	}
	if x, y := a.AppendJSON(nil), b.AppendJSON(nil); !bytes.Equal(x, y) {
		return fmt.Errorf("%s@%d JSON:\n%s\n!=\n%s", a.Key(), a.Timestamp, x, y)
	}
	return nil
}

// countingTransport counts INSERTs and the rows in each.
type countingTransport struct {
	transport
	mu      sync.Mutex
	inserts []int
}

func (c *countingTransport) insert(ctx context.Context, table string, in proto.Input) error {
	err := c.transport.insert(ctx, table, in)
	if err == nil {
		c.mu.Lock()
		c.inserts = append(c.inserts, in[0].Data.Rows())
		c.mu.Unlock()
	}
	return err
}

func (c *countingTransport) counts() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.inserts...)
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
