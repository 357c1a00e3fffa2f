package backtest

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/internal/testkit"
)

// PageData is the report a page written by WriteHTML embeds, decoded.
func PageData(t testing.TB, page []byte) any {
	t.Helper()
	const open = `<script id="report" type="application/json">`
	i := bytes.Index(page, []byte(open))
	if i < 0 {
		t.Fatal("page has no report element")
	}
	rest := page[i+len(open):]
	j := bytes.Index(rest, []byte("</script>"))
	if j < 0 {
		t.Fatal("report element not closed")
	}
	var v any
	if err := json.Unmarshal(rest[:j], &v); err != nil {
		t.Fatalf("page report: %v: %.200s", err, rest[:j])
	}
	return v
}

// The page carries the report exactly, even with markup in a reason or a
// name, and inlines its script and style.
func TestPageDataEqualsTheReport(t *testing.T) {
	ticks := testkit.Path("binance", "BTCUSDT", time.Second, "99", "100", "102", "98", "97", "101", "103")
	cfg := config(t, strings.Replace(crossing, "name: cross", `name: "</script><b>x&y"`, 1))
	rep, _, err := Run(context.Background(), cfg, source(ticks), Options{Source: "log"})
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	var want any
	_ = json.Unmarshal(b, &want)
	if got := PageData(t, page.Bytes()); !reflect.DeepEqual(got, want) {
		t.Fatalf("page data differs from the report:\n%v\n%v", got, want)
	}
	if bytes.Count(page.Bytes(), []byte("</script>")) != 2 || !bytes.Contains(page.Bytes(), []byte("createSeriesMarkers")) && !bytes.Contains(page.Bytes(), []byte("backtestRendered")) {
		t.Fatal("page does not inline its script once")
	}
}
