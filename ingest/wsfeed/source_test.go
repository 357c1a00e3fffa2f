package wsfeed

import (
	"testing"

	"github.com/tickflow/tickflow/ingest"
)

func TestSourceSpec(t *testing.T) {
	type cfg struct{ SourceConfig }
	built := 0
	spec := SourceSpec("okx", func() cfg { return cfg{SourceConfig{URL: "wss://x", StreamsPerConn: 7}} },
		func(_ ingest.Env, c *cfg) (*Feed, error) {
			built = c.StreamsPerConn
			return nil, nil
		})
	if spec.Name != "okx" || spec.Enabled || len(spec.EnvVars) != 1 ||
		spec.EnvVars[0] != (ingest.EnvVar{Var: "TICKFLOW_OKX_URL", Key: "url"}) {
		t.Fatalf("spec %+v", spec)
	}
	c, ok := spec.Config().(*cfg)
	if !ok || c.URL != "wss://x" || c.StreamsPerConn != 7 {
		t.Fatalf("config %#v", spec.Config())
	}
	c.StreamsPerConn = 9
	if other := spec.Config().(*cfg); other.StreamsPerConn != 7 {
		t.Error("Config shares one value between calls")
	}
	if _, err := spec.New(ingest.Env{}, c); err != nil || built != 9 {
		t.Errorf("New: %v, built with %d", err, built)
	}
}
