package risk

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/cockroachdb/apd/v3"

	"github.com/tickflow/tickflow/alert"
	"github.com/tickflow/tickflow/tick"
)

// Config is the sinks.risk section of config.yaml.
type Config struct {
	Volatility  Volatility  `yaml:"volatility"`
	StaleFeed   StaleFeed   `yaml:"stale_feed"`
	CrossedBook CrossedBook `yaml:"crossed_book"`
	PriceSpike  PriceSpike  `yaml:"price_spike"`
	Webhook     Webhook     `yaml:"webhook"`
	// Recent is how many alerts the REST API keeps for listing.
	Recent int `yaml:"recent"`
	// StateDir is where the monitor's state (windows, open alerts) is
	// journalled after every batch so a restart carries on where it left
	// off (see state.go). Empty keeps state in memory only: after a restart
	// windows refill from the ticks replayed since the last commit.
	StateDir string `yaml:"state_dir"`
}

// Rule is what every rule has.
type Rule struct {
	Enabled  bool           `yaml:"enabled"`
	Severity alert.Severity `yaml:"severity"`
	// Cooldown is the least event time between two firings of the rule for
	// one pair; a condition that returns sooner is suppressed.
	Cooldown time.Duration `yaml:"cooldown"`
}

// Volatility is the seed's rule: |price change over Window| > Threshold.
type Volatility struct {
	Rule `yaml:",inline"`
	// Window of event time the change is measured over.
	Window time.Duration `yaml:"window"`
	// Threshold is a fraction: "0.05" is 5 %.
	Threshold string `yaml:"threshold"`
	// ClearRatio is the hysteresis: a firing alert resolves only once the
	// change falls to ClearRatio × Threshold.
	ClearRatio string `yaml:"clear_ratio"`
	// Open24hThreshold, when set, also checks the change against the
	// exchange's 24 h open (rule price_volatility_24h).
	Open24hThreshold string `yaml:"open_24h_threshold"`

	threshold, clear, open24h, open24hClear apd.Decimal
}

// StaleFeed fires when a pair has had no tick for After while other pairs
// of its exchange kept ticking (see the package doc for why event time).
type StaleFeed struct {
	Rule  `yaml:",inline"`
	After time.Duration `yaml:"after"`
	// CheckEvery is how often, in the exchange's event time, every pair of
	// the exchange is checked.
	CheckEvery time.Duration `yaml:"check_every"`
}

// CrossedBook fires when bid >= ask (crossed or locked).
type CrossedBook struct {
	Rule `yaml:",inline"`
}

// PriceSpike fires when a pair's price deviates from the median of the same
// instrument's latest prices on other exchanges by more than Threshold. The
// instrument is the normalized one the ticks carry (Base, Quote), or for
// ticks from before they carried one, their symbol resolved (package
// instrument): okx BTC-USDT meets binance BTCUSDT, kraken XBT/USD meets
// coinbase BTC-USD. A pair with no instrument is compared with nothing.
type PriceSpike struct {
	Rule       `yaml:",inline"`
	Threshold  string `yaml:"threshold"`
	ClearRatio string `yaml:"clear_ratio"`
	// MaxAge: other exchanges' prices older than this (event time, relative
	// to the tick being checked) are not compared against.
	MaxAge time.Duration `yaml:"max_age"`

	threshold, clear apd.Decimal
}

// Webhook posts alerts to a URL. Empty URL disables it.
type Webhook struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"`
	// Retries after the first attempt, with exponential backoff from
	// Backoff up to MaxBackoff.
	Retries    int           `yaml:"retries"`
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Secret keys the X-Tickflow-Signature HMAC-SHA256 header; empty sends
	// no signature.
	Secret string `yaml:"secret"`
	// MinSeverity: alerts below it are not posted.
	MinSeverity alert.Severity `yaml:"min_severity"`
	// Queue bounds the alerts waiting for delivery; beyond it they are
	// dropped (and counted) rather than holding up the pipeline.
	Queue int `yaml:"queue"`
}

// DefaultConfig is the documented default.
func DefaultConfig() *Config {
	return &Config{
		Volatility: Volatility{
			Rule:       Rule{Enabled: true, Severity: alert.Warning, Cooldown: 5 * time.Minute},
			Window:     5 * time.Minute,
			Threshold:  "0.05",
			ClearRatio: "0.8",
		},
		StaleFeed: StaleFeed{
			Rule:       Rule{Enabled: true, Severity: alert.Warning, Cooldown: time.Minute},
			After:      30 * time.Second,
			CheckEvery: time.Second,
		},
		CrossedBook: CrossedBook{Rule: Rule{Enabled: true, Severity: alert.Critical, Cooldown: time.Minute}},
		PriceSpike: PriceSpike{
			Rule:       Rule{Enabled: true, Severity: alert.Warning, Cooldown: 5 * time.Minute},
			Threshold:  "0.02",
			ClearRatio: "0.8",
			MaxAge:     10 * time.Second,
		},
		Webhook: Webhook{
			Timeout:     5 * time.Second,
			Retries:     3,
			Backoff:     500 * time.Millisecond,
			MaxBackoff:  30 * time.Second,
			MinSeverity: alert.Info,
			Queue:       256,
		},
		Recent: 1000,
	}
}

// Validate checks every setting and parses the decimals. Errors name the
// key under sinks.risk.
func (c *Config) Validate() error {
	for name, r := range map[string]*Rule{
		"volatility": &c.Volatility.Rule, "stale_feed": &c.StaleFeed.Rule,
		"crossed_book": &c.CrossedBook.Rule, "price_spike": &c.PriceSpike.Rule,
	} {
		if _, err := alert.ParseSeverity(string(r.Severity)); err != nil {
			return fmt.Errorf("%s.severity: %w", name, err)
		}
		if r.Cooldown < 0 {
			return fmt.Errorf("%s.cooldown: must be >= 0, got %s", name, r.Cooldown)
		}
	}
	v := &c.Volatility
	if v.Window < time.Second {
		return fmt.Errorf("volatility.window: must be at least 1s, got %s", v.Window)
	}
	if err := fraction(&v.threshold, "volatility.threshold", v.Threshold, false); err != nil {
		return err
	}
	if err := clearLevel(&v.clear, "volatility.clear_ratio", v.ClearRatio, &v.threshold); err != nil {
		return err
	}
	if v.Open24hThreshold != "" {
		if err := fraction(&v.open24h, "volatility.open_24h_threshold", v.Open24hThreshold, false); err != nil {
			return err
		}
		if err := clearLevel(&v.open24hClear, "volatility.clear_ratio", v.ClearRatio, &v.open24h); err != nil {
			return err
		}
	}
	if c.StaleFeed.After <= 0 {
		return fmt.Errorf("stale_feed.after: must be > 0, got %s", c.StaleFeed.After)
	}
	if c.StaleFeed.CheckEvery < time.Millisecond {
		return fmt.Errorf("stale_feed.check_every: must be at least 1ms, got %s", c.StaleFeed.CheckEvery)
	}
	p := &c.PriceSpike
	if err := fraction(&p.threshold, "price_spike.threshold", p.Threshold, false); err != nil {
		return err
	}
	if err := clearLevel(&p.clear, "price_spike.clear_ratio", p.ClearRatio, &p.threshold); err != nil {
		return err
	}
	if p.MaxAge <= 0 {
		return fmt.Errorf("price_spike.max_age: must be > 0, got %s", p.MaxAge)
	}
	if c.Recent < 1 {
		return fmt.Errorf("recent: must be >= 1, got %d", c.Recent)
	}
	return c.Webhook.validate()
}

func (w *Webhook) validate() error {
	if w.URL == "" {
		return nil
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook.url: %q is not an http(s) URL", w.URL)
	}
	switch {
	case w.Timeout <= 0:
		return fmt.Errorf("webhook.timeout: must be > 0, got %s", w.Timeout)
	case w.Retries < 0:
		return fmt.Errorf("webhook.retries: must be >= 0, got %d", w.Retries)
	case w.Backoff <= 0:
		return fmt.Errorf("webhook.backoff: must be > 0, got %s", w.Backoff)
	case w.MaxBackoff < w.Backoff:
		return fmt.Errorf("webhook.max_backoff: %s is below backoff %s", w.MaxBackoff, w.Backoff)
	case w.Queue < 1:
		return fmt.Errorf("webhook.queue: must be >= 1, got %d", w.Queue)
	}
	if _, err := alert.ParseSeverity(string(w.MinSeverity)); err != nil {
		return fmt.Errorf("webhook.min_severity: %w", err)
	}
	return nil
}

// fraction parses a positive decimal into d.
func fraction(d *apd.Decimal, key, s string, allowZero bool) error {
	if err := tick.ParseDecimal(d, s); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if d.Sign() < 0 || (!allowZero && d.Sign() == 0) {
		return fmt.Errorf("%s: must be > 0, got %q", key, s)
	}
	return nil
}

// clearLevel sets d to ratio × threshold, the level a firing alert must
// fall back to before it resolves.
func clearLevel(d *apd.Decimal, key, ratio string, threshold *apd.Decimal) error {
	var r apd.Decimal
	if err := fraction(&r, key, ratio, true); err != nil {
		return err
	}
	if r.Cmp(apd.New(1, 0)) > 0 {
		return fmt.Errorf("%s: must be within 0..1, got %q", key, ratio)
	}
	if _, err := apd.BaseContext.Mul(d, &r, threshold); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

var errNoPublisher = errors.New("no publisher to send alerts to")
