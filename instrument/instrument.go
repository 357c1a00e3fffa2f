// Package instrument maps each exchange's native symbol to one normalized
// instrument, base and quote asset, so a user can ask for BTC-USDT on every
// exchange at once. Records keep the native symbol (it is the exchange's
// key and the Kafka key); the instrument travels beside it.
//
// Native forms:
//
//	binance, bybit   BTCUSDT   concatenated: split by a quote-asset suffix table
//	sim              BTCUSDT   the simulated exchange names its pairs as Binance does
//	okx              BTC-USDT  dashed (spot only: BTC-USDT-SWAP is refused)
//	coinbase         BTC-USD   dashed
//	kraken           BTC/USD   slashed (v2); legacy XBT→BTC and XDG→DOGE
//
// A symbol that cannot be split, or that splits more than one way, is an
// error (ErrUnknown, ErrAmbiguous), never a guess. A Resolver can be told
// the exchange's own answer for a symbol (Binance exchangeInfo baseAsset and
// quoteAsset, Bybit instruments-info baseCoin and quoteCoin), which always
// wins over the suffix table.
package instrument

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// Instrument is a normalized pair of upper-case assets.
type Instrument struct {
	Base, Quote string
}

// String is the normalized spelling, "BTC-USDT".
func (i Instrument) String() string { return i.Base + "-" + i.Quote }

// IsZero reports whether i is the zero Instrument.
func (i Instrument) IsZero() bool { return i.Base == "" && i.Quote == "" }

// Errors, wrapped with the symbol that caused them.
var (
	ErrUnknown   = errors.New("instrument: symbol not recognised")
	ErrAmbiguous = errors.New("instrument: symbol splits more than one way")
)

// Parse reads the normalized form "BASE-QUOTE" (case-insensitive), what a
// user asks for in the API. Kraken's legacy codes are read as the assets
// they name (XBT-USD is BTC-USD): no exchange uses them for anything else.
func Parse(s string) (Instrument, error) {
	return split(strings.ToUpper(strings.TrimSpace(s)), '-', krakenAliases)
}

// exchanges are the exchanges with a symbol form, sorted.
var exchanges = []string{"binance", "bybit", "coinbase", "kraken", "okx", "sim"}

// Exchanges lists the exchanges Resolve and Native know the symbol form
// of, sorted. The caller may keep the slice; it is a copy.
func Exchanges() []string { return append([]string(nil), exchanges...) }

// quoteSuffixes are the quote assets of Binance and Bybit spot, longest
// first so the first match is the longest. Plain USD is left out: neither
// Binance spot nor Bybit spot quotes in it, and with it every FDUSD, BUSD and
// TUSD pair would also split as ...-USD. Nested suffixes that remain (EUR
// inside AEUR) make a symbol ambiguous: ADAEUR is ADA-EUR, but the table
// alone would equally read AD-AEUR. Such a symbol is ErrAmbiguous unless
// the Resolver was told its assets.
var quoteSuffixes = []string{
	// 5
	"FDUSD",
	// 4
	"USDT", "USDC", "BUSD", "TUSD", "USDP", "USDE", "BIDR", "IDRT", "AEUR", "EURI", "BVND", "DOGE",
	// 3
	"BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "GBP", "AUD", "JPY", "RUB", "UAH", "NGN", "PLN", "RON",
	"ZAR", "ARS", "MXN", "COP", "CZK", "DAI", "PAX", "VAI", "XRP", "TRX", "DOT", "SOL", "MNT", "UST",
}

// Concat splits a concatenated symbol ("BTCUSDT") by the quote-asset
// suffix table. The base must be at least one letter or digit long.
func Concat(symbol string) (Instrument, error) {
	s := strings.ToUpper(strings.TrimSpace(symbol))
	if !alnum(s) {
		return Instrument{}, fmt.Errorf("%w: %q is not a concatenated symbol", ErrUnknown, symbol)
	}
	var found []Instrument
	for _, q := range quoteSuffixes {
		if len(s) > len(q) && strings.HasSuffix(s, q) {
			found = append(found, Instrument{Base: s[:len(s)-len(q)], Quote: q})
		}
	}
	switch len(found) {
	case 0:
		return Instrument{}, fmt.Errorf("%w: %q ends in no known quote asset", ErrUnknown, symbol)
	case 1:
		return found[0], nil
	}
	alts := make([]string, len(found))
	for i, f := range found {
		alts[i] = f.String()
	}
	return Instrument{}, fmt.Errorf("%w: %q could be %s", ErrAmbiguous, symbol, strings.Join(alts, " or "))
}

// Dashed splits "BTC-USDT" (OKX, Coinbase). More than one dash (OKX
// derivatives: BTC-USDT-SWAP, BTC-USD-240628) is not a spot pair.
func Dashed(symbol string) (Instrument, error) {
	return split(strings.ToUpper(strings.TrimSpace(symbol)), '-', nil)
}

// krakenAliases are Kraken's legacy asset codes, still used by the v1 API
// and the REST pair names; v2 sends BTC and DOGE, but configs written for
// v1 say XBT/USD.
var krakenAliases = map[string]string{"XBT": "BTC", "XDG": "DOGE"}

// Slashed splits Kraken's "BTC/USD", mapping legacy asset codes.
func Slashed(symbol string) (Instrument, error) {
	return split(strings.ToUpper(strings.TrimSpace(symbol)), '/', krakenAliases)
}

func split(s string, sep byte, aliases map[string]string) (Instrument, error) {
	i := strings.IndexByte(s, sep)
	if i <= 0 || i == len(s)-1 || strings.IndexByte(s[i+1:], sep) >= 0 {
		return Instrument{}, fmt.Errorf("%w: %q is not BASE%cQUOTE", ErrUnknown, s, sep)
	}
	in := Instrument{Base: s[:i], Quote: s[i+1:]}
	if !alnum(in.Base) || !alnum(in.Quote) {
		return Instrument{}, fmt.Errorf("%w: %q has characters an asset code does not", ErrUnknown, s)
	}
	if a, ok := aliases[in.Base]; ok {
		in.Base = a
	}
	if a, ok := aliases[in.Quote]; ok {
		in.Quote = a
	}
	return in, nil
}

func alnum(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Native is the symbol form an exchange uses for an instrument, the inverse
// of Resolve for the dashed and slashed exchanges. For Binance and Bybit it
// is the concatenation, which Resolve may refuse as ambiguous.
func Native(exchange string, in Instrument) (string, error) {
	switch exchange {
	case "binance", "bybit", "sim":
		return in.Base + in.Quote, nil
	case "okx", "coinbase":
		return in.Base + "-" + in.Quote, nil
	case "kraken":
		return in.Base + "/" + in.Quote, nil
	}
	return "", fmt.Errorf("%w: no symbol form for exchange %q", ErrUnknown, exchange)
}

// Resolver maps (exchange, native symbol) to an instrument: first what it
// was told with Add, then the exchange's symbol form. It is safe for
// concurrent use; the zero value is ready.
type Resolver struct {
	mu    sync.RWMutex
	known map[string]Instrument // "exchange\x00SYMBOL"
	gen   atomic.Uint64
}

// Generation changes whenever Add changes what the Resolver answers, so a
// caller that caches answers knows when to drop them. A nil Resolver's
// generation is always 0.
func (r *Resolver) Generation() uint64 {
	if r == nil {
		return 0
	}
	return r.gen.Load()
}

// Add records the exchange's own base and quote for a symbol, as its
// instrument listing gives them. It overrides the suffix table, and is how
// an ambiguous concatenated symbol becomes resolvable.
func (r *Resolver) Add(exchange, symbol string, in Instrument) error {
	in.Base, in.Quote = strings.ToUpper(in.Base), strings.ToUpper(in.Quote)
	if !alnum(in.Base) || !alnum(in.Quote) {
		return fmt.Errorf("%w: %s:%s → %q/%q is not a pair of asset codes", ErrUnknown, exchange, symbol, in.Base, in.Quote)
	}
	if exchange == "kraken" {
		if a, ok := krakenAliases[in.Base]; ok {
			in.Base = a
		}
		if a, ok := krakenAliases[in.Quote]; ok {
			in.Quote = a
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known == nil {
		r.known = map[string]Instrument{}
	}
	r.known[exchange+"\x00"+strings.ToUpper(symbol)] = in
	r.gen.Add(1)
	return nil
}

// Record is the instrument of a record (a tick, a trade, a quote): the
// base and quote it carries, or, for a record written before records
// carried them, what its native symbol resolves to.
func (r *Resolver) Record(exchange, symbol, base, quote string) (Instrument, error) {
	if base != "" && quote != "" {
		return Instrument{Base: base, Quote: quote}, nil
	}
	return r.Resolve(exchange, symbol)
}

// Resolve returns the instrument of an exchange's native symbol.
func (r *Resolver) Resolve(exchange, symbol string) (Instrument, error) {
	if r != nil {
		r.mu.RLock()
		in, ok := r.known[exchange+"\x00"+strings.ToUpper(symbol)]
		r.mu.RUnlock()
		if ok {
			return in, nil
		}
	}
	return Resolve(exchange, symbol)
}

// Resolve returns the instrument of an exchange's native symbol from its
// symbol form alone (no listing).
func Resolve(exchange, symbol string) (Instrument, error) {
	switch exchange {
	case "binance", "bybit", "sim":
		return Concat(symbol)
	case "okx", "coinbase":
		return Dashed(symbol)
	case "kraken":
		return Slashed(symbol)
	}
	return Instrument{}, fmt.Errorf("%w: no symbol form for exchange %q", ErrUnknown, exchange)
}
