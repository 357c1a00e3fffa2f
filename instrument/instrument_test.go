package instrument

import (
	"errors"
	"testing"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		exchange, symbol string
		want             string // "" when an error is expected
		err              error
	}{
		{"binance", "BTCUSDT", "BTC-USDT", nil},
		{"binance", "btcusdt", "BTC-USDT", nil},
		{"binance", "BNBBTC", "BNB-BTC", nil},
		{"binance", "ETHFDUSD", "ETH-FDUSD", nil}, // FDUSD, not ...-USD: USD is not in the table
		{"binance", "BTCBUSD", "BTC-BUSD", nil},
		{"binance", "BTCTUSD", "BTC-TUSD", nil},
		{"binance", "USDCUSDT", "USDC-USDT", nil},
		{"binance", "BTCTRY", "BTC-TRY", nil},
		{"binance", "WBTCBTC", "WBTC-BTC", nil},
		{"binance", "BTCEUR", "BTC-EUR", nil},
		{"binance", "BTCEURI", "BTC-EURI", nil},
		{"binance", "SHIBDOGE", "SHIB-DOGE", nil},
		{"bybit", "1000PEPEUSDT", "1000PEPE-USDT", nil},
		{"bybit", "BTCUSDC", "BTC-USDC", nil},
		{"bybit", "MNTUSDT", "MNT-USDT", nil},
		// EUR nests inside AEUR: ADAEUR reads as ADA-EUR or AD-AEUR.
		{"binance", "ADAEUR", "", ErrAmbiguous},
		{"binance", "BTCAEUR", "", ErrAmbiguous},
		{"binance", "USDT", "", ErrUnknown},     // no base
		{"binance", "BTCXYZ", "", ErrUnknown},   // no known quote
		{"binance", "BTCUSD", "", ErrUnknown},   // plain USD: not a Binance spot quote
		{"binance", "BTC-USDT", "", ErrUnknown}, // wrong form for the exchange
		{"binance", "", "", ErrUnknown},
		{"okx", "BTC-USDT", "BTC-USDT", nil},
		{"okx", "eth-usdc", "ETH-USDC", nil},
		{"okx", "BTC-USDT-SWAP", "", ErrUnknown},
		{"okx", "BTC-USD-240628", "", ErrUnknown},
		{"okx", "BTCUSDT", "", ErrUnknown},
		{"okx", "-USDT", "", ErrUnknown},
		{"okx", "BTC-", "", ErrUnknown},
		{"coinbase", "BTC-USD", "BTC-USD", nil},
		{"coinbase", "ETH-EUR", "ETH-EUR", nil},
		{"coinbase", "BTC USD", "", ErrUnknown},
		{"kraken", "BTC/USD", "BTC-USD", nil},
		{"kraken", "XBT/USD", "BTC-USD", nil},
		{"kraken", "XDG/EUR", "DOGE-EUR", nil},
		{"kraken", "ETH/XBT", "ETH-BTC", nil},
		{"kraken", "ALGO/USD", "ALGO-USD", nil},
		{"kraken", "XXBTZUSD", "", ErrUnknown}, // REST pair name, not a v2 symbol
		{"kraken", "BTC/USD/X", "", ErrUnknown},
		{"kraken", "BTC/U$D", "", ErrUnknown},
		{"sim", "ETHUSDT", "ETH-USDT", nil},
		{"deribit", "BTC-PERPETUAL", "", ErrUnknown},
	} {
		t.Run(tc.exchange+":"+tc.symbol, func(t *testing.T) {
			got, err := Resolve(tc.exchange, tc.symbol)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Resolve = %v, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("Resolve = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestAmbiguousErrorNamesTheAlternatives(t *testing.T) {
	_, err := Concat("ADAEUR")
	if err == nil || err.Error() != `instrument: symbol splits more than one way: "ADAEUR" could be AD-AEUR or ADA-EUR` {
		t.Fatalf("err = %v", err)
	}
}

func TestResolverListingWins(t *testing.T) {
	var r Resolver
	if _, err := r.Resolve("binance", "ADAEUR"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("before Add: %v", err)
	}
	gen := r.Generation()
	if err := r.Add("binance", "ADAEUR", Instrument{"ada", "eur"}); err != nil {
		t.Fatal(err)
	}
	if r.Generation() == gen {
		t.Fatal("Add left the generation unchanged: cached answers would go stale")
	}
	if err := r.Add("kraken", "XBT/USD", Instrument{"XBT", "USD"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ex, sym, want string }{
		{"binance", "ADAEUR", "ADA-EUR"},
		{"binance", "adaeur", "ADA-EUR"},
		{"binance", "BTCUSDT", "BTC-USDT"}, // not listed: the table still answers
		{"kraken", "XBT/USD", "BTC-USD"},   // a listing's legacy codes are normalized too
	} {
		got, err := r.Resolve(tc.ex, tc.sym)
		if err != nil || got.String() != tc.want {
			t.Errorf("%s:%s = %v, %v; want %s", tc.ex, tc.sym, got, err, tc.want)
		}
	}
	if _, err := r.Resolve("bybit", "ADAEUR"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("a listing is per exchange: %v", err)
	}
	if err := r.Add("binance", "X", Instrument{"", "USDT"}); !errors.Is(err, ErrUnknown) {
		t.Errorf("Add accepted an empty base: %v", err)
	}
	gen = r.Generation()
	if err := r.Add("binance", "Y", Instrument{"", "USDT"}); err == nil || r.Generation() != gen {
		t.Errorf("a refused Add changed the generation (%v)", err)
	}
	var nilR *Resolver
	if got, err := nilR.Resolve("okx", "BTC-USDT"); err != nil || got.String() != "BTC-USDT" || nilR.Generation() != 0 {
		t.Errorf("nil resolver: %v, %v", got, err)
	}
}

func TestParseAndNative(t *testing.T) {
	in, err := Parse(" btc-usdt ")
	if err != nil || in != (Instrument{"BTC", "USDT"}) {
		t.Fatalf("Parse = %v, %v", in, err)
	}
	if _, err := Parse("BTCUSDT"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Parse(BTCUSDT) = %v", err)
	}
	if in, err := Parse("xbt-usd"); err != nil || in.String() != "BTC-USD" {
		t.Fatalf("Parse(xbt-usd) = %v, %v; want Kraken's legacy code read as BTC", in, err)
	}
	for _, ex := range Exchanges() {
		if _, err := Native(ex, in); err != nil {
			t.Errorf("Exchanges lists %s, which has no symbol form: %v", ex, err)
		}
	}
	for ex, want := range map[string]string{"binance": "BTCUSDT", "bybit": "BTCUSDT", "sim": "BTCUSDT", "okx": "BTC-USDT", "coinbase": "BTC-USDT", "kraken": "BTC/USDT"} {
		got, err := Native(ex, in)
		if err != nil || got != want {
			t.Errorf("Native(%s) = %q, %v; want %q", ex, got, err, want)
		}
		back, err := Resolve(ex, got)
		if err != nil || back != in {
			t.Errorf("Resolve(Native(%s)) = %v, %v", ex, back, err)
		}
	}
	if _, err := Native("nowhere", in); err == nil {
		t.Error("Native accepted an unknown exchange")
	}
}

func TestRecord(t *testing.T) {
	var r *Resolver
	for _, tc := range []struct {
		ex, sym, base, quote, want string
		err                        error
	}{
		{"kraken", "XBT/USD", "BTC", "USD", "BTC-USD", nil}, // what the record carries
		{"kraken", "XBT/USD", "", "", "BTC-USD", nil},       // an older record: resolved
		{"binance", "WEIRD", "W", "EIRD", "W-EIRD", nil},    // the record's answer wins
		{"binance", "ADAEUR", "", "", "", ErrAmbiguous},
		{"nowhere", "X", "", "", "", ErrUnknown},
	} {
		got, err := r.Record(tc.ex, tc.sym, tc.base, tc.quote)
		if !errors.Is(err, tc.err) || (err == nil && got.String() != tc.want) {
			t.Errorf("Record(%s, %s, %q, %q) = %v, %v; want %s %v", tc.ex, tc.sym, tc.base, tc.quote, got, err, tc.want, tc.err)
		}
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"BTCUSDT", "BTC-USDT", "XBT/USD", "ADAEUR", "", "-", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, ex := range []string{"binance", "okx", "kraken"} {
			in, err := Resolve(ex, s)
			if err != nil {
				continue
			}
			if !alnum(in.Base) || !alnum(in.Quote) {
				t.Fatalf("%s %q → %#v", ex, s, in)
			}
		}
	})
}
