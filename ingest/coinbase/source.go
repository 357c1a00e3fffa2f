package coinbase

import (
	"errors"
	"fmt"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wsfeed"
)

func init() { ingest.Register(Spec()) }

// Spec is the Coinbase source's registration: ingest.coinbase in the
// config, disabled by default, TICKFLOW_COINBASE_URL overriding its url.
func Spec() ingest.Spec { return wsfeed.SourceSpec(Exchange, DefaultConfig, NewSource) }

// Formats the source speaks.
const (
	FormatAdvanced = "advanced" // Advanced Trade: ticker + heartbeats channels
	FormatExchange = "exchange" // Coinbase Exchange: ticker + heartbeat channels
)

// Config is the ingest.coinbase section: the shared keys (url, symbols,
// streams_per_conn, stale_after, max_lifetime, backoff_min, backoff_max;
// no ping_every, the heartbeat channel is the keep-alive) and format.
// Symbols are product ids: BTC-USD.
type Config struct {
	wsfeed.SourceConfig `yaml:",inline"`
	// Format is advanced (the default, wss://advanced-trade-ws.coinbase.com)
	// or exchange (wss://ws-feed.exchange.coinbase.com); set url with it.
	Format string `yaml:"format"`
}

// Source limits. Neither feed documents a cap on products per
// connection; 100 keeps one ticker subscription modest. Connection
// attempts stay under Exchange's 8 a second per IP.
const (
	maxStreamsPerConn = 500
	connectEvery      = 250 * time.Millisecond
)

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{SourceConfig: wsfeed.SourceConfig{
		URL:            AdvancedURL,
		Symbols:        []string{"BTC-USD", "ETH-USD"},
		StreamsPerConn: 100,
		// heartbeats arrive every second.
		StaleAfter: 30 * time.Second,
		BackoffMin: 500 * time.Millisecond,
		BackoffMax: 30 * time.Second,
	}, Format: FormatAdvanced}
}

// Validate checks the section of an enabled source.
func (c *Config) Validate() error {
	if c.Format != FormatAdvanced && c.Format != FormatExchange {
		return fmt.Errorf("format: %q is neither %s nor %s", c.Format, FormatAdvanced, FormatExchange)
	}
	if c.Trades && c.Format != FormatExchange {
		return errors.New("trades: only with format: exchange (its matches channel says whose side a trade is; Advanced Trade's market_trades does not)")
	}
	return c.Check(wsfeed.Limits{
		Exchange: "Coinbase", MaxStreamsPerConn: maxStreamsPerConn,
		Symbol: func(s string) error {
			for _, r := range s {
				if !('A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
					return errors.New("not a Coinbase product id (BTC-USD)")
				}
			}
			return nil
		},
	})
}

// NewSource builds the Coinbase ticker source on the connection manager.
func NewSource(env ingest.Env, c *Config) (*wsfeed.Feed, error) {
	o := c.Options(Exchange, env)
	o.Exchange = source{url: c.URL, exchange: c.Format == FormatExchange, trades: c.Trades}
	o.Streams = c.Symbols
	o.Connects = wsfeed.Rate{Every: connectEvery, Burst: 4}
	o.ClientMessages = wsfeed.Rate{Every: 100 * time.Millisecond, Burst: 5}
	return wsfeed.New(o)
}

type source struct {
	url      string
	exchange bool
	trades   bool
}

func (x source) URL([]string) string { return x.url }

// Subscribe is, for Advanced Trade, the ticker channel and the heartbeats
// channel (one channel per message, as it requires; heartbeats keep the
// connection open); for Exchange, one message with ticker, heartbeat and,
// with trades, matches.
func (x source) Subscribe(streams []string) [][]byte {
	if x.exchange {
		channels := []string{Ticker, Heartbeat}
		if x.trades {
			channels = append(channels, Matches)
		}
		m, err := Subscribe(streams, channels...)
		if err != nil {
			panic(err)
		}
		return [][]byte{m}
	}
	t, err := SubscribeAdvanced(Ticker, streams, "")
	if err != nil {
		panic(err)
	}
	h, err := SubscribeAdvanced(Heartbeats, nil, "")
	if err != nil {
		panic(err)
	}
	return [][]byte{t, h}
}

func (x source) NewDecoder(streams []string) wsfeed.FrameDecoder {
	channels := []string{Ticker}
	if x.trades {
		channels = append(channels, Matches)
	}
	return wsfeed.Wire(NewDecoder(wsfeed.Topics(streams, channels...), nil), nil)
}
