package okx

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/tickflow/tickflow/ingest"
	"github.com/tickflow/tickflow/ingest/wire"
	"github.com/tickflow/tickflow/ingest/wsfeed"
)

func init() { ingest.Register(Spec()) }

// Spec is the OKX source's registration: ingest.okx in the config,
// disabled by default, TICKFLOW_OKX_URL overriding its url.
func Spec() ingest.Spec { return wsfeed.SourceSpec(Exchange, DefaultConfig, NewSource) }

// Config is the ingest.okx section: the shared keys (url, symbols,
// streams_per_conn, stale_after, max_lifetime, backoff_min, backoff_max,
// ping_every). Symbols are instIds: BTC-USDT.
type Config struct {
	wsfeed.SourceConfig `yaml:",inline"`
}

// Source limits. OKX caps subscribe requests (480 an hour per connection)
// and their size (64 KB of args), not the channels on a connection; each
// connection here sends its whole shard in as few requests as the size
// allows, so the cap only bounds how much one reconnect resubscribes.
const (
	maxStreamsPerConn = 1000
	// connectEvery keeps connection attempts under 3 a second per IP.
	connectEvery = 350 * time.Millisecond
)

// DefaultConfig is the documented default.
func DefaultConfig() Config {
	return Config{wsfeed.SourceConfig{
		URL:            PublicURL,
		Symbols:        []string{"BTC-USDT", "ETH-USDT"},
		StreamsPerConn: 100,
		StaleAfter:     60 * time.Second,
		BackoffMin:     500 * time.Millisecond,
		BackoffMax:     30 * time.Second,
		PingEvery:      PingAfter,
	}}
}

// Validate checks the section of an enabled source.
func (c *Config) Validate() error {
	return c.Check(wsfeed.Limits{
		Exchange: "OKX", MaxStreamsPerConn: maxStreamsPerConn, MaxPingEvery: IdleTimeout - time.Second,
		Symbol: func(s string) error {
			if !upperDashed(s) {
				return errors.New("not an OKX instId (BTC-USDT)")
			}
			return nil
		},
	})
}

func upperDashed(s string) bool {
	for _, r := range s {
		if !('A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
			return false
		}
	}
	return s != "" && s[0] != '-' && s[len(s)-1] != '-'
}

// NewSource builds the OKX tickers source on the connection manager.
func NewSource(env ingest.Env, c *Config) (*wsfeed.Feed, error) {
	o := c.Options(Exchange, env)
	o.Exchange = source{url: c.URL, trades: c.Trades, quotes: c.Quotes}
	o.Streams = c.Symbols
	o.Connects = wsfeed.Rate{Every: connectEvery, Burst: 1}
	// Pings and the subscribe requests; the hourly request cap is far off
	// when a connection subscribes once.
	o.ClientMessages = wsfeed.Rate{Every: 100 * time.Millisecond, Burst: 5}
	o.KeepAlive.Ping = Ping()
	return wsfeed.New(o)
}

// channels are what each instrument is subscribed to.
func (x source) channels() []string {
	ch := []string{Tickers}
	if x.trades {
		ch = append(ch, Trades)
	}
	if x.quotes {
		ch = append(ch, BBO)
	}
	return ch
}

// source is OKX's side of the connection manager.
type source struct {
	url            string
	trades, quotes bool
}

func (x source) URL([]string) string { return x.url }

// Subscribe is one request with every instrument's channels, split where
// a request would pass 64 KB.
func (x source) Subscribe(streams []string) [][]byte {
	chs := x.channels()
	args := make([]Arg, 0, len(chs)*len(streams))
	for _, s := range streams {
		for _, ch := range chs {
			args = append(args, Arg{Channel: ch, InstID: s})
		}
	}
	var out [][]byte
	for n := 0; len(args) > 0; n++ {
		k := len(args)
		for {
			b, err := Subscribe("sub"+strconv.Itoa(n), args[:k]...)
			if err == nil {
				out = append(out, b)
				break
			}
			if k == 1 {
				panic(fmt.Sprintf("okx: one subscribe arg does not fit a request: %v", err))
			}
			k /= 2
		}
		args = args[k:]
	}
	return out
}

func (x source) NewDecoder(streams []string) wsfeed.FrameDecoder {
	return wsfeed.Wire(NewDecoder(wsfeed.Topics(streams, x.channels()...), nil), events)
}

func events(f *wire.Frame) wsfeed.Event {
	if f.Kind == wire.Notice && f.Control.Code != NoticeReconnect {
		// Only 64008 announces a close; other notices are logged.
		return wsfeed.Event{Kind: wsfeed.ServerEvent, Name: "notice", Info: f.Control.Code + " " + f.Control.Message}
	}
	return wsfeed.FromWire(f)
}
