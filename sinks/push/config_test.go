package push

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tickflow/tickflow/config"
)

func TestConfigFromYAML(t *testing.T) {
	yaml := `
sinks:
  push:
    enabled: true
    listen: "127.0.0.1:9001"
    allowed_origins: ["*.example.com"]
    limits:
      max_connections: 5
      max_lag: 2s
`
	cfg, err := config.Parse([]byte(yaml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := cfg.Sink("push")
	if !ok || !sc.Available || !sc.Enabled {
		t.Fatalf("push entry = %+v", sc)
	}
	got := sc.Settings.(*Config)
	want := DefaultConfig()
	want.Listen = "127.0.0.1:9001"
	want.AllowedOrigins = []string{"*.example.com"}
	want.Limits.MaxConnections = 5
	want.Limits.MaxLag = 2 * time.Second
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings = %+v\nwant       %+v", got, want)
	}
	if sc.Batch.Size != 256 || sc.Batch.MaxWait != 2*time.Millisecond {
		t.Errorf("default batch = %+v", sc.Batch)
	}

	// TICKFLOW_PUSH_LISTEN wins over the file.
	env := map[string]string{"TICKFLOW_PUSH_LISTEN": "0.0.0.0:7000"}
	cfg, err = config.Parse([]byte(yaml), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	sc, _ = cfg.Sink("push")
	if l := sc.Settings.(*Config).Listen; l != "0.0.0.0:7000" {
		t.Errorf("listen with env override = %q", l)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		yaml, want string
	}{
		{"listen: nope", `listen: "nope" is not host:port`},
		{"path: ws", `path: "ws" must start with /`},
		{"public_url: http://x", `public_url: "http://x" is not a ws:// or wss:// URL`},
		{"allowed_origins: ['[']", `allowed_origins: bad pattern "["`},
		{"shards: 0", "shards: 0 is outside 1..256"},
		{"ping_interval: 0s", "ping_interval: must be > 0"},
		{"limits: {queue_bytes: -1}", "limits.queue_bytes: must be > 0"},
		{"limits: {max_messages_per_second: 0}", "limits.max_messages_per_second: must be > 0"},
		{"limits: {max_conections: 3}", "max_conections"},
		{"bogus: 1", "bogus"},
	}
	for _, tt := range tests {
		doc := "sinks:\n  push:\n    enabled: true\n    " + tt.yaml + "\n"
		_, err := config.Parse([]byte(doc), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "sinks.push") {
			t.Errorf("%s: err = %v, want one mentioning sinks.push and %q", tt.yaml, err, tt.want)
		}
	}
}
