package store

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/cockroachdb/apd/v3"
)

// unscaled is the reference conversion: the exact value times 10^18 as a
// big.Int, computed through apd's own arithmetic.
func unscaled(t *testing.T, s string) *big.Int {
	t.Helper()
	d, _, err := apd.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	var scaled apd.Decimal
	scaled.Set(d)
	scaled.Exponent += decimalScale
	var i apd.Decimal
	if _, err := apd.BaseContext.WithPrecision(200).Quantize(&i, &scaled, 0); err != nil {
		t.Fatal(err)
	}
	v := i.Coeff.MathBigInt()
	if i.Negative {
		v.Neg(v)
	}
	return v
}

func int128Big(v proto.Decimal128) *big.Int {
	hi := new(big.Int).SetUint64(v.High)
	x := new(big.Int).Lsh(hi, 64)
	x.Or(x, new(big.Int).SetUint64(v.Low))
	if v.High>>63 == 1 {
		x.Sub(x, two128)
	}
	return x
}

// bigInt128 is int128Big's inverse, for building column values by hand.
func bigInt128(t *testing.T, s string) proto.Decimal128 {
	t.Helper()
	x, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad integer %q", s)
	}
	if x.Sign() < 0 {
		x.Add(x, two128)
	}
	var buf [16]byte
	x.FillBytes(buf[:])
	return proto.Decimal128{High: beUint64(buf[:8]), Low: beUint64(buf[8:])}
}

// same reports whether a and b are the same decimal to the representation:
// coefficient, exponent and sign, so "50100.00" is not "50100".
func same(a, b *apd.Decimal) bool {
	return a.Form == b.Form && a.Negative == b.Negative && a.Exponent == b.Exponent && a.Coeff.Cmp(&b.Coeff) == 0
}

// storeAndRead is what a value goes through on its way to ClickHouse and
// back: the column value, the scale byte, and the rebuilt decimal.
func storeAndRead(t *testing.T, in *apd.Decimal) (proto.Decimal128, uint8, apd.Decimal) {
	t.Helper()
	v, err := toDecimal128(in)
	if err != nil {
		t.Fatalf("toDecimal128(%s): %v", in, err)
	}
	sc, err := scaleOf(in)
	if err != nil {
		t.Fatalf("scaleOf(%s): %v", in, err)
	}
	var out apd.Decimal
	fromDecimal128(&out, v, sc)
	return v, sc, out
}

// TestDecimalRoundTrip: every value comes back with its coefficient and
// exponent, so its text is the text it arrived with.
func TestDecimalRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		in    string
		scale uint8
	}{
		{"0", 0}, {"1", 0}, {"-1", 0}, {"1.5", 1},
		{"50100.00", 2}, {"0.10000000", 8}, {"1234.5000", 4}, {"-42.4200", 4},
		{"50100", 0}, {"0.00", 2}, {"0.000000000000000000", 18},
		{"0.00000001", 8}, {"0.000000000000000001", 18}, {"-0.000000000000000001", 18},
		{"67432.12345678", 8}, {"123456789.123456789", 9}, {"1.100000000000000000", 18},
		{"18446744073709551615", 0},                      // max uint64 coefficient, scale 0
		{"18446744073709551616.5", 1},                    // coefficient beyond uint64
		{"99999999999999999999.999999999999999999", 18},  // the largest value that fits
		{"-99999999999999999999.999999999999999999", 18}, // and the smallest
		{"99999999999999999999", 0},                      // the largest integer
		{"99999999999999999999.0", 1},                    // read through the big path
		{"1.000000000000000000000", 21},                  // zeros beyond the column's 18 places survive
		{"0E-127", maxScale},
		{"-0", negZeroFlag}, {"-0.00", negZeroFlag | 2}, // the codec keeps the sign of zero; so does the store
	} {
		t.Run(tc.in, func(t *testing.T) {
			in, _, err := apd.NewFromString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			v, sc, out := storeAndRead(t, in)
			if got, want := int128Big(v), unscaled(t, tc.in); got.Cmp(want) != 0 {
				t.Fatalf("unscaled = %s, want %s", got, want)
			}
			if sc != tc.scale {
				t.Fatalf("scale byte %#x, want %#x", sc, tc.scale)
			}
			if !same(&out, in) || out.Text('f') != in.Text('f') {
				t.Fatalf("round trip %s -> %s (coefficient %s, exponent %d)", tc.in, out.Text('f'), out.Coeff.String(), out.Exponent)
			}
		})
	}
}

// TestDecimalPositiveExponent: "1E+3" is stored as scale 0 and reads back
// as 1000, the same number and the same plain text; only the exponent
// notation, which the tick codec never writes, is gone.
func TestDecimalPositiveExponent(t *testing.T) {
	for in, want := range map[string]string{"1E+5": "100000", "1.2E+19": "12000000000000000000", "-5E+1": "-50", "0E+3": "0"} {
		d, _, err := apd.NewFromString(in)
		if err != nil {
			t.Fatal(err)
		}
		_, sc, out := storeAndRead(t, d)
		if sc != 0 || out.Exponent != 0 || out.Cmp(d) != 0 || out.Text('f') != want {
			t.Errorf("%s: scale %d, read back %s (exponent %d), want %s", in, sc, out.Text('f'), out.Exponent, want)
		}
	}
}

// TestDecimalRoundTripRandom covers the fast and big paths with random
// values of every scale the column holds and up to 38 digits.
func TestDecimalRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		scale := rng.IntN(decimalScale + 1)
		intDigits := rng.IntN(decimalPrecision - decimalScale + 1)
		var b strings.Builder
		if rng.IntN(2) == 0 {
			b.WriteByte('-')
		}
		b.WriteByte('0' + byte(rng.IntN(10)))
		for range intDigits - 1 {
			b.WriteByte('0' + byte(rng.IntN(10)))
		}
		if scale > 0 {
			b.WriteByte('.')
			for range scale {
				// Zeros often, so trailing zeros are common.
				b.WriteByte("0000123456789"[rng.IntN(13)])
			}
		}
		s := b.String()
		in, _, err := apd.NewFromString(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, out := storeAndRead(t, in); !same(&out, in) {
			t.Fatalf("value %d: %s reads back as %s", i, s, out.String())
		}
	}
}

func TestDecimalRejectsWhatDoesNotFit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"0.0000000000000000001", errTooPrecise},  // 19 places
		{"1.1234567890123456789", errTooPrecise},  // 19 places, big path
		{"-0.0000000000000000005", errTooPrecise}, // never rounded to zero
		{"100000000000000000000", errTooLarge},    // 21 integer digits
		{"-100000000000000000000", errTooLarge},
		{"1E+20", errTooLarge},
		{"18446744073709551615E+3", errTooLarge},
		{"0E-128", errScaleTooLarge}, // the value fits; its text does not
		{"1." + strings.Repeat("0", 200), errScaleTooLarge},
		{"NaN", errNotFinite},
		{"Infinity", errNotFinite},
	} {
		t.Run(tc.in, func(t *testing.T) {
			in, _, err := apd.NewFromString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			_, err = toDecimal128(in)
			if err == nil {
				_, err = scaleOf(in)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("%s: %v, want %v", tc.in, err, tc.want)
			}
			if reason := rejectReason(err); reason == "" {
				t.Fatal("no reject reason")
			}
		})
	}
}

// TestFromDecimal128 decodes column values as a server hands them back,
// including scale bytes the sink never writes: those of rows stored before
// the table had scale columns (0) and damaged ones. None may give a wrong
// number; a scale too small for the value gives its reduced form.
func TestFromDecimal128(t *testing.T) {
	for _, tc := range []struct {
		unscaled string // the column's integer, value × 10^18
		scale    uint8
		want     string
	}{
		{"0", 0, "0"},
		{"0", 18, "0.000000000000000000"},
		{"50100000000000000000000", 2, "50100.00"},
		{"50100000000000000000000", 0, "50100"},    // an old row of an integer: as before
		{"500000000000000000", 0, "0.5"},           // an old row with a fraction: reduced, as before
		{"1234567800000000000000", 2, "1234.5678"}, // scale too small: reduced
		{"1234500000000000000000", 2, "1234.50"},
		{"1234500000000000000000", 4, "1234.5000"},
		{"1", 18, "0.000000000000000001"},
		{"-1", 18, "-0.000000000000000001"},
		{"-1", 0, "-0.000000000000000001"},
		{"99999999999999999999999999999999999999", 18, "99999999999999999999.999999999999999999"},
		{"-99999999999999999999999999999999999999", 18, "-99999999999999999999.999999999999999999"},
		{"99999999999999999999000000000000000000", 0, "99999999999999999999"},
		{"99999999999999999999900000000000000000", 1, "99999999999999999999.9"},
		{"-18446744073709551616", 18, "-18.446744073709551616"},                                     // high word all ones
		{"170141183460469231731687303715884105727", 18, "170141183460469231731.687303715884105727"}, // int128 max, beyond the column
		{"-170141183460469231731687303715884105728", 18, "-170141183460469231731.687303715884105728"},
		{"1000000000000000000", 25, "1.0000000000000000000000000"},
		{"-1000000000000000000", maxScale, "-1." + strings.Repeat("0", maxScale)},
		{"0", negZeroFlag, "-0"},
		{"0", negZeroFlag | 3, "-0.000"},
		{"5000000000000000000", negZeroFlag | 1, "5.0"}, // the flag means nothing for a nonzero value
		{"-5000000000000000000", negZeroFlag | 1, "-5.0"},
	} {
		t.Run(fmt.Sprintf("%s/%#x", tc.unscaled, tc.scale), func(t *testing.T) {
			var d apd.Decimal
			d.Exponent = 99 // decoding must not depend on what d held
			d.Negative = true
			fromDecimal128(&d, bigInt128(t, tc.unscaled), tc.scale)
			if got := d.Text('f'); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			// The number itself is always the column's.
			var ref apd.Decimal
			ref.Coeff.SetMathBigInt(new(big.Int).Abs(int128Big(bigInt128(t, tc.unscaled))))
			ref.Negative = strings.HasPrefix(tc.unscaled, "-")
			ref.Exponent = -decimalScale
			if d.Cmp(&ref) != 0 {
				t.Fatalf("value %s, want %s", d.String(), ref.String())
			}
		})
	}
	// The smallest int128, whose magnitude has no positive int128.
	var d apd.Decimal
	fromDecimal128(&d, proto.Decimal128{Low: 0, High: 1 << 63}, 18)
	if want := "-170141183460469231731.687303715884105728"; d.Text('f') != want {
		t.Fatalf("int128 min reads %s, want %s", d.Text('f'), want)
	}
}
