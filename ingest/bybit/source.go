package bybit

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wsfeed"
)

func init() { ingest.Register(Spec()) }

// Spec is the Bybit spot source's registration: ingest.bybit in the
// config, disabled by default, TICKFLOW_BYBIT_URL overriding its url.
func Spec() ingest.Spec { return wsfeed.SourceSpec(Exchange, DefaultConfig, NewSource) }

// Config is the ingest.bybit section: the shared keys (url, symbols,
// streams_per_conn, stale_after, max_lifetime, backoff_min, backoff_max,
// ping_every). Symbols are spot symbols: BTCUSDT.
type Config struct {
	wsfeed.SourceConfig `yaml:",inline"`
}

// Source limits. A public connection's args may total 21,000 characters:
// "tickers.BTCUSDT" is 15, so even 20-character symbols fit 700 to a
// connection; requests carry at most 10 args each.
const (
	maxStreamsPerConn = 700
	// connectEvery and connectBurst keep attempts at most 10 + 300 per
	// 5 minutes, under Bybit's 500 per IP.
	connectEvery = time.Second
	connectBurst = 10
)

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{wsfeed.SourceConfig{
		URL:            SpotURL,
		Symbols:        []string{"BTCUSDT", "ETHUSDT"},
		StreamsPerConn: 100,
		StaleAfter:     60 * time.Second,
		BackoffMin:     500 * time.Millisecond,
		BackoffMax:     30 * time.Second,
		PingEvery:      PingInterval,
	}}
}

// Validate checks the section of an enabled source.
func (c *Config) Validate() error {
	perSymbol := 1
	for _, on := range []bool{c.Trades, c.Quotes} {
		if on {
			perSymbol++
		}
	}
	if c.StreamsPerConn*perSymbol > maxStreamsPerConn {
		return fmt.Errorf("streams_per_conn: %d symbols of %d topics each (tickers, trades, quotes) is over %d topics a connection", c.StreamsPerConn, perSymbol, maxStreamsPerConn)
	}
	return c.Check(wsfeed.Limits{
		Exchange: "Bybit", MaxStreamsPerConn: maxStreamsPerConn, MaxPingEvery: PingInterval,
		Symbol: func(s string) error {
			for _, r := range s {
				if !('A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
					return errors.New("not a Bybit spot symbol (BTCUSDT: upper-case letters and digits)")
				}
			}
			return nil
		},
	})
}

// NewSource builds the Bybit spot tickers source on the connection
// manager.
func NewSource(env ingest.Env, c *Config) (*wsfeed.Feed, error) {
	o := c.Options(Exchange, env)
	o.Exchange = source{url: c.URL, trades: c.Trades, quotes: c.Quotes}
	o.Streams = c.Symbols
	o.Connects = wsfeed.Rate{Every: connectEvery, Burst: connectBurst}
	o.ClientMessages = wsfeed.Rate{Every: 100 * time.Millisecond, Burst: 10}
	o.KeepAlive.Ping = Ping("")
	return wsfeed.New(o)
}

// channels are what each symbol is subscribed to.
func (x source) channels() []string {
	ch := []string{Tickers}
	if x.trades {
		ch = append(ch, Trades)
	}
	if x.quotes {
		ch = append(ch, Book1)
	}
	return ch
}

type source struct {
	url            string
	trades, quotes bool
}

func (x source) URL([]string) string { return x.url }

// Subscribe is one request per 10 topics, spot's limit.
func (x source) Subscribe(streams []string) [][]byte {
	chs := x.channels()
	topics := make([]string, 0, len(chs)*len(streams))
	for _, s := range streams {
		for _, ch := range chs {
			topics = append(topics, Topic(ch, s))
		}
	}
	var out [][]byte
	for i, b := range Batches(topics) {
		m, err := Subscribe("sub"+strconv.Itoa(i), b...)
		if err != nil {
			panic(err) // Batches keeps to the limit Subscribe checks
		}
		out = append(out, m)
	}
	return out
}

func (x source) NewDecoder(streams []string) wsfeed.FrameDecoder {
	return wsfeed.Wire(NewDecoder(wsfeed.Topics(streams, x.channels()...), nil), nil)
}
