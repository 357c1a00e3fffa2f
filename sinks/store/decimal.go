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
//
// A Decimal column keeps the number, not its text: "50100.00" and "50100"
// are the same Decimal(38, 18). tickflow serves decimals as the exchange
// wrote them, so each decimal column has a UInt8 companion, <name>_scale,
// holding the digits the value had after the point; a read rebuilds the
// exact coefficient and exponent from the two. One byte per field (rather
// than one packed column) keeps each column a plain UInt8 that 18.16 and
// current servers take over both transports, compresses to almost nothing,
// and lets an older table gain the columns with a plain ALTER ... ADD COLUMN.
const (
	decimalPrecision = 38
	decimalScale     = 18

	// maxScale is the most digits after the point a scale column records.
	// Digits beyond decimalScale must be zeros (the column cannot hold
	// anything else), so this bounds only how many trailing zeros survive.
	maxScale = 127
	// negZeroFlag, set in a scale byte, marks a negative zero ("-0.00"):
	// the Decimal column holds no sign for zero, and the tick codec keeps
	// it, so the store does too.
	negZeroFlag = 0x80
)

// The scale and the flag share one byte without overlapping.
var _ [negZeroFlag - maxScale - 1]struct{}

// decimalType is the column type as ClickHouse spells it in DDL and in
// system.columns; scaleType is its companion's.
var (
	decimalType = proto.ColumnType(fmt.Sprintf("Decimal(%d, %d)", decimalPrecision, decimalScale))
	scaleType   = proto.ColumnTypeUInt8
)

// Reasons a decimal does not fit the columns; WriteBatch rejects the tick
// rather than round it.
var (
	errTooPrecise    = fmt.Errorf("a nonzero digit beyond %d decimal places", decimalScale)
	errScaleTooLarge = fmt.Errorf("more than %d decimal places (trailing zeros included)", maxScale)
	errTooLarge      = fmt.Errorf("more than %d integer digits", decimalPrecision-decimalScale)
	errNotFinite     = errors.New("not a finite number")
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

// scaleOf is the scale byte that, with d's column value, rebuilds d. A
// positive exponent ("1E+3") is stored as scale 0: toDecimal128 has made
// the value an integer already, and 1000 is both the same number and the
// same plain ('f') text the tick codec writes for 1E+3; ticks from the bus
// never carry one anyway, since that codec writes no exponents. Call it
// after toDecimal128 accepted d.
func scaleOf(d *apd.Decimal) (uint8, error) {
	var sc uint8
	switch {
	case d.Exponent > 0:
	case d.Exponent < -maxScale:
		return 0, errScaleTooLarge
	default:
		sc = uint8(-d.Exponent)
	}
	if d.Negative && d.Coeff.Sign() == 0 {
		sc |= negZeroFlag
	}
	return sc, nil
}

// fromDecimal128 sets d to the column value v written with scale byte sc:
// the coefficient and exponent the tick had, so "50100.00" reads back as
// "50100.00".
//
// A scale too small for the value (its digits after the point would be
// lost) cannot have been written by the sink; it is what rows stored
// before the table had scale columns read as (the added columns default
// to 0). Such a value reads in reduced form, trailing zeros dropped, which
// is how those rows always read: never a wrong number.
func fromDecimal128(d *apd.Decimal, v proto.Decimal128, sc uint8) {
	neg := v.High>>63 == 1
	lo, hi := v.Low, v.High
	if neg {
		lo, hi = negate128(lo, hi)
	}
	scale := int(sc &^ negZeroFlag)
	d.Form = apd.Finite
	d.Exponent = int32(-scale)
	switch shift := decimalScale - scale; {
	case shift >= 0 && hi < pow10u64[shift]:
		// Fast path, nearly every value: the quotient fits 64 bits.
		q, rem := bits.Div64(hi, lo, pow10u64[shift])
		if rem != 0 {
			setReduced(d, neg, lo, hi)
			return
		}
		d.Coeff.SetUint64(q)
	case shift >= 0:
		var rem big.Int
		c := uint128Big(lo, hi)
		c.QuoRem(c, bigPow10(shift), &rem)
		if rem.Sign() != 0 {
			setReduced(d, neg, lo, hi)
			return
		}
		d.Coeff.SetMathBigInt(c)
	default:
		// More places than the column has: the extra ones are zeros.
		c := uint128Big(lo, hi)
		d.Coeff.SetMathBigInt(c.Mul(c, bigPow10(-shift)))
	}
	if d.Coeff.Sign() == 0 {
		d.Negative = sc&negZeroFlag != 0
	} else {
		d.Negative = neg
	}
}

// setReduced sets d to the column value with trailing fractional zeros
// removed. Only a value with a nonzero fractional digit gets here, so the
// exponent stays negative and the text plain.
func setReduced(d *apd.Decimal, neg bool, lo, hi uint64) {
	if hi == 0 {
		d.Coeff.SetUint64(lo)
	} else {
		d.Coeff.SetMathBigInt(uint128Big(lo, hi))
	}
	d.Form = apd.Finite
	d.Negative = neg
	d.Exponent = -decimalScale
	d.Reduce(d)
}

func uint128Big(lo, hi uint64) *big.Int {
	var buf [16]byte
	putBeUint64(buf[:8], hi)
	putBeUint64(buf[8:], lo)
	return new(big.Int).SetBytes(buf[:])
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
