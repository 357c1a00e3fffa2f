package store

import (
	"errors"
	"math"
	"math/big"
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

func TestDecimalRoundTrip(t *testing.T) {
	for _, s := range []string{
		"0", "1", "-1", "1.5", "50100.00", "0.00000001", "0.000000000000000001", "-0.000000000000000001",
		"67432.12345678", "123456789.123456789",
		"18446744073709551615",                     // max uint64 coefficient, scale 0: big path
		"18446744073709551616.5",                   // coefficient beyond uint64
		"99999999999999999999.999999999999999999",  // the largest value that fits
		"-99999999999999999999.999999999999999999", // and the smallest
		"1E+5", "1.2E+19", "1.000000000000000000000", // trailing zeros beyond the scale are exact
		"-42.4200",
	} {
		t.Run(s, func(t *testing.T) {
			in, _, err := apd.NewFromString(s)
			if err != nil {
				t.Fatal(err)
			}
			v, err := toDecimal128(in)
			if err != nil {
				t.Fatalf("toDecimal128(%s): %v", s, err)
			}
			if got, want := int128Big(v), unscaled(t, s); got.Cmp(want) != 0 {
				t.Fatalf("unscaled = %s, want %s", got, want)
			}
			var out apd.Decimal
			fromDecimal128(&out, v)
			if out.Cmp(in) != 0 {
				t.Fatalf("round trip %s -> %s", s, out.String())
			}
			if out.Form != apd.Finite {
				t.Fatalf("form %v", out.Form)
			}
		})
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
		{"NaN", errNotFinite},
		{"Infinity", errNotFinite},
	} {
		t.Run(tc.in, func(t *testing.T) {
			in, _, err := apd.NewFromString(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := toDecimal128(in); !errors.Is(err, tc.want) {
				t.Fatalf("toDecimal128(%s) = %v, want %v", tc.in, err, tc.want)
			}
		})
	}
}

func TestFromDecimal128Zero(t *testing.T) {
	var d apd.Decimal
	fromDecimal128(&d, proto.Decimal128{})
	if !d.IsZero() || d.Negative || d.Exponent != 0 {
		t.Fatalf("zero reads back as %s (exp %d, neg %v)", d.String(), d.Exponent, d.Negative)
	}
	// A large negative from the server decodes through the big path.
	fromDecimal128(&d, proto.Decimal128{Low: 0, High: math.MaxUint64})
	want := new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 64))
	if int128Big(proto.Decimal128{Low: 0, High: math.MaxUint64}).Cmp(want) != 0 {
		t.Fatal("reference broken")
	}
	var exp apd.Decimal
	exp.Coeff.SetMathBigInt(new(big.Int).Lsh(big.NewInt(1), 64))
	exp.Negative = true
	exp.Exponent = -decimalScale
	if d.Cmp(&exp) != 0 {
		t.Fatalf("got %s want %s", d.String(), exp.String())
	}
}

// TestFromDecimal128Text: values read back print as plain decimals with
// String for integers too, and with Text('f') always.
func TestFromDecimal128Text(t *testing.T) {
	for in, want := range map[string]string{"50100.00": "50100", "1E+5": "100000", "0.00000001": "0.00000001", "-42.4200": "-42.42"} {
		d, _, _ := apd.NewFromString(in)
		v, err := toDecimal128(d)
		if err != nil {
			t.Fatal(err)
		}
		var out apd.Decimal
		fromDecimal128(&out, v)
		if got := out.Text('f'); got != want {
			t.Errorf("%s reads back as %s, want %s", in, got, want)
		}
		if out.Exponent > 0 {
			t.Errorf("%s reads back with exponent %d", in, out.Exponent)
		}
	}
}
