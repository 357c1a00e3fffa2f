package store

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/cockroachdb/apd/v3"
)

// Every decimal column is Decimal(38, 18): 18 fractional digits cover the
// finest precision any exchange quotes (ETH-style 18-decimal token amounts;
// centralised exchanges stop at 8-10), and the 20 integer digits left cover
// any 24 h quote volume by many orders of magnitude. One type for every
// field keeps the reader and writer to one conversion.
const (
	decimalPrecision = 38
	decimalScale     = 18
)

// decimalType is the column type as ClickHouse spells it in DDL and in
// system.columns.
var decimalType = proto.ColumnType(fmt.Sprintf("Decimal(%d, %d)", decimalPrecision, decimalScale))

// Reasons a decimal does not fit the column; WriteBatch rejects the tick
// rather than round it.
var (
	errTooPrecise = fmt.Errorf("more than %d decimal places", decimalScale)
	errTooLarge   = fmt.Errorf("more than %d integer digits", decimalPrecision-decimalScale)
	errNotFinite  = errors.New("not a finite number")
)

var (
	// maxUnscaled is 10^38, the exclusive bound of a Decimal(38, S)'s
	// unscaled value, also split into 64-bit halves for the fast path.
	maxUnscaled   = bigPow10(decimalPrecision)
	maxUnscaledHi = new(big.Int).Rsh(maxUnscaled, 64).Uint64()
	maxUnscaledLo = new(big.Int).And(maxUnscaled, new(big.Int).SetUint64(math.MaxUint64)).Uint64()
	two128        = new(big.Int).Lsh(big.NewInt(1), 128)
	pow10u64      = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
		1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}
)

func bigPow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// toDecimal128 converts d to the column's unscaled two's-complement value,
// exactly or not at all.
func toDecimal128(d *apd.Decimal) (proto.Decimal128, error) {
	if d.Form != apd.Finite {
		return proto.Decimal128{}, errNotFinite
	}
	shift := int(d.Exponent) + decimalScale // power of ten to multiply the coefficient by
	if shift >= 0 && shift < len(pow10u64) && d.Coeff.IsUint64() {
		// Fast path, nearly every exchange value: a 64-bit coefficient
		// times a 64-bit power of ten is at most 128 bits.
		hi, lo := bits.Mul64(d.Coeff.Uint64(), pow10u64[shift])
		if hi > maxUnscaledHi || (hi == maxUnscaledHi && lo >= maxUnscaledLo) {
			return proto.Decimal128{}, errTooLarge
		}
		if d.Negative {
			lo, hi = negate128(lo, hi)
		}
		return proto.Decimal128{Low: lo, High: hi}, nil
	}
	v := d.Coeff.MathBigInt()
	if shift >= 0 {
		v.Mul(v, bigPow10(shift))
	} else {
		var rem big.Int
		v.QuoRem(v, bigPow10(-shift), &rem)
		if rem.Sign() != 0 {
			return proto.Decimal128{}, errTooPrecise
		}
	}
	if v.Cmp(maxUnscaled) >= 0 {
		return proto.Decimal128{}, errTooLarge
	}
	if d.Negative {
		v.Sub(two128, v)
	}
	var buf [16]byte
	v.FillBytes(buf[:])
	return proto.Decimal128{
		High: beUint64(buf[:8]),
		Low:  beUint64(buf[8:]),
	}, nil
}

// fromDecimal128 sets d to the column value v, with trailing fractional
// zeros removed: ClickHouse keeps no per-value scale, so "50100.00" reads
// back as "50100", the same number.
func fromDecimal128(d *apd.Decimal, v proto.Decimal128) {
	neg := v.High>>63 == 1
	lo, hi := v.Low, v.High
	if neg {
		lo, hi = negate128(lo, hi)
	}
	if hi == 0 && lo <= math.MaxInt64 {
		d.Coeff.SetUint64(lo)
	} else {
		var buf [16]byte
		putBeUint64(buf[:8], hi)
		putBeUint64(buf[8:], lo)
		d.Coeff.SetMathBigInt(new(big.Int).SetBytes(buf[:]))
	}
	d.Form = apd.Finite
	d.Negative = neg && d.Coeff.Sign() != 0
	d.Exponent = -decimalScale
	d.Reduce(d)
	if d.Exponent > 0 {
		// Keep integers integral ("50100", not "501E+2") for consumers
		// that print with String.
		d.Coeff.Mul(&d.Coeff, apd.NewBigInt(0).Exp(apd.NewBigInt(10), apd.NewBigInt(int64(d.Exponent)), nil))
		d.Exponent = 0
	}
}

// negate128 is two's-complement negation of hi:lo.
func negate128(lo, hi uint64) (uint64, uint64) {
	lo, hi = ^lo, ^hi
	var carry uint64
	lo, carry = bits.Add64(lo, 1, 0)
	hi += carry
	return lo, hi
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func putBeUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}
