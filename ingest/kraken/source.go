package kraken

import (
	"errors"
	"strings"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wsfeed"
)

func init() { ingest.Register(Spec()) }

// Spec is the Kraken spot v2 source's registration: ingest.kraken in the
// config, disabled by default, TICKFLOW_KRAKEN_URL overriding its url.
func Spec() ingest.Spec { return wsfeed.SourceSpec(Exchange, DefaultConfig, NewSource) }

// Config is the ingest.kraken section: the shared keys (url, symbols,
// streams_per_conn, stale_after, max_lifetime, backoff_min, backoff_max,
// ping_every). Symbols are v2 pairs: BTC/USD.
type Config struct {
	wsfeed.SourceConfig `yaml:",inline"`
}

// Source limits. Kraken documents no cap on symbols per subscription or
// connection; 200 keeps a resubscribe after a reconnect small. Its
// connection limit is Cloudflare's, 150 attempts per rolling 10 minutes
// per IP: a burst of 10 and then one per 5 s stays at 130.
const (
	maxStreamsPerConn = 1000
	connectEvery      = 5 * time.Second
	connectBurst      = 10
	maxPingEvery      = time.Minute
)

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{wsfeed.SourceConfig{
		URL:            URL,
		Symbols:        []string{"BTC/USD", "ETH/USD"},
		StreamsPerConn: 200,
		// A heartbeat comes every second when nothing else does.
		StaleAfter: 15 * time.Second,
		BackoffMin: time.Second,
		BackoffMax: 60 * time.Second,
		PingEvery:  30 * time.Second,
	}}
}

// Validate checks the section of an enabled source.
func (c *Config) Validate() error {
	return c.Check(wsfeed.Limits{
		Exchange: "Kraken", MaxStreamsPerConn: maxStreamsPerConn, MaxPingEvery: maxPingEvery,
		Symbol: func(s string) error {
			b, q, ok := strings.Cut(s, "/")
			if !ok || b == "" || q == "" || strings.ToUpper(s) != s {
				return errors.New("not a Kraken v2 pair (BTC/USD)")
			}
			return nil
		},
	})
}

// NewSource builds the Kraken ticker source on the connection manager.
func NewSource(env ingest.Env, c *Config) (*wsfeed.Feed, error) {
	o := c.Options(Exchange, env)
	o.Exchange = source{url: c.URL, trades: c.Trades}
	o.Streams = c.Symbols
	o.Connects = wsfeed.Rate{Every: connectEvery, Burst: connectBurst}
	o.ClientMessages = wsfeed.Rate{Every: 100 * time.Millisecond, Burst: 5}
	o.KeepAlive.Ping = Ping(0)
	return wsfeed.New(o)
}

type source struct {
	url    string
	trades bool
}

func (x source) URL([]string) string { return x.url }

// Subscribe is one ticker request for the shard's symbols, and one trade
// request without the snapshot (its last 50 trades would be published
// again on every reconnect).
func (x source) Subscribe(streams []string) [][]byte {
	m, err := Subscribe(Params{Channel: Ticker, Symbols: streams}, 1)
	if err != nil {
		panic(err) // a shard is never empty
	}
	out := [][]byte{m}
	if x.trades {
		no := false
		m, err := Subscribe(Params{Channel: Trade, Symbols: streams, Snapshot: &no}, 2)
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}

func (x source) NewDecoder(streams []string) wsfeed.FrameDecoder {
	channels := []string{Ticker}
	if x.trades {
		channels = append(channels, Trade)
	}
	return wsfeed.Wire(NewDecoder(wsfeed.Topics(streams, channels...), nil), nil)
}
