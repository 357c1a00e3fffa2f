package testsvc

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func chQuery(t *testing.T, ch *ClickHouse, q string) (string, error) {
	t.Helper()
	resp, err := http.Post(ch.HTTPURL()+"/?query="+url.QueryEscape(q), "text/plain", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s: %s", q, resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

func TestClickHouseKillAndRestartKeepsData(t *testing.T) {
	ch := StartClickHouse(t)
	for _, q := range []string{
		"CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x",
		"INSERT INTO t VALUES (1), (2), (3)",
	} {
		if _, err := chQuery(t, ch, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := chQuery(t, ch, "SELECT 1"); err == nil {
		t.Fatal("server still answers after Kill")
	}
	if err := ch.Start(); err != nil {
		t.Fatal(err)
	}
	got, err := chQuery(t, ch, "SELECT sum(x) FROM t")
	if err != nil {
		t.Fatal(err)
	}
	if got != "6" {
		t.Fatalf("sum after restart = %q, want 6", got)
	}
	if !strings.HasPrefix(ch.TCPAddr(), "127.0.0.1:") {
		t.Fatalf("TCPAddr = %q", ch.TCPAddr())
	}
}
