package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tickflow/tickflow/bus"
	"github.com/tickflow/tickflow/config"
	"github.com/tickflow/tickflow/replay"
	"github.com/tickflow/tickflow/sinks"
	"github.com/tickflow/tickflow/sinks/store"
	"github.com/tickflow/tickflow/tick"
)

// pickSource settles -source: "store" when sinks.store.clickhouse.url is
// configured, else "log", unless the flag says which; it returns the store
// settings when the store is the source.
func pickSource(source *string, cfg config.Config) (*store.Config, error) {
	var storeCfg *store.Config
	if sc, ok := cfg.Sink("store"); ok && sc.Available {
		if c := sc.Settings.(*store.Config); c.ClickHouse.URL != "" {
			storeCfg = c
		}
	}
	switch *source {
	case "":
		*source = "log"
		if storeCfg != nil {
			*source = "store"
		}
	case "store":
		if storeCfg == nil {
			return nil, errors.New("-source store: sinks.store.clickhouse.url is not configured")
		}
	case "log":
		return nil, nil
	default:
		return nil, fmt.Errorf(`-source %q: want "store" or "log"`, *source)
	}
	if *source == "log" {
		return nil, nil
	}
	return storeCfg, nil
}

// replaySource opens the source -source named; page is the store's page
// size (0: its default).
func replaySource(kind string, cfg config.Config, cc bus.ClientConfig, storeCfg *store.Config, log *slog.Logger,
	from, to time.Time, exs, syms []string, page int) (replay.Source, func(), error) {
	if kind == "store" {
		h, err := store.Open(sinks.Env{Name: "store", Logger: log.With("component", "store")}, *storeCfg)
		if err != nil {
			return nil, nil, fmt.Errorf("sinks.store: %w", err)
		}
		q := store.ScanQuery{From: from, To: to, Exchanges: exs, Symbols: syms, PageSize: page}
		return replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error { return h.Scan(ctx, q, fn) }),
			func() { _ = h.Close(context.Background()) }, nil
	}
	keep := func(t *tick.Tick) bool {
		return (len(exs) == 0 || slices.Contains(exs, t.Exchange)) && (len(syms) == 0 || slices.Contains(syms, t.Symbol))
	}
	q := bus.LogQuery{From: from, To: to, Keep: keep}
	return replay.SourceFunc(func(ctx context.Context, fn func(*tick.Tick) error) error {
		skipped, err := bus.ScanLog(ctx, cc, cfg.Bus.Topic, q, fn)
		if skipped > 0 {
			log.Warn("replay: undecodable records skipped", "count", skipped, "topic", cfg.Bus.Topic)
		}
		return err
	}), func() {}, nil
}

// parseTime reads RFC 3339 or Unix milliseconds; "" is the zero time.
func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
		return time.UnixMilli(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-01-02T15:04:05Z) or Unix milliseconds", v)
	}
	return t, nil
}

func splitList(s string, norm func(string) string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, norm(p))
		}
	}
	return out
}
