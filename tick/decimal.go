package tick

import (
	"strconv"

	"github.com/cockroachdb/apd/v3"
)

// Exchange prices almost always fit in 18 significant digits. For those the
// codec parses and formats the decimal itself, without the allocations of
// apd's big-integer paths; anything else (exponents, long coefficients)
// takes apd's general path, so the result is exact either way.

// ParseDecimalBytes is ParseDecimal reading straight from a frame's bytes,
// for exchange decoders: plain decimals ("25.35190000") take the fast path
// without allocating, and the result keeps its exponent, so "50100.00"
// keeps its two places. b is not retained.
func ParseDecimalBytes(d *apd.Decimal, b []byte) error {
	return ParseDecimal(d, unsafeString(b))
}

// parseDecimalFast handles [-]digits[.digits] with at most 18 digits. It
// reports false when s needs the general parser.
func parseDecimalFast(d *apd.Decimal, s string) bool {
	i, neg := 0, false
	if len(s) > 0 && s[0] == '-' {
		neg, i = true, 1
	}
	var coeff int64
	var exp int32
	digits, dot := 0, false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if digits == 18 {
				return false
			}
			if coeff != 0 || c != '0' {
				digits++
			}
			coeff = coeff*10 + int64(c-'0')
			if dot {
				exp--
			}
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	if len(s) == 0 || (neg && len(s) == 1) || s[len(s)-1] == '.' || s[0] == '.' || (neg && s[1] == '.') {
		return false
	}
	if neg && coeff == 0 {
		return false // -0 keeps its sign only through apd's parser
	}
	if neg {
		coeff = -coeff
	}
	d.SetFinite(coeff, exp)
	return true
}

// appendDecimal formats d like apd's 'f' format.
func appendDecimal(b []byte, d *apd.Decimal) []byte {
	if d.Form != apd.Finite || !d.Coeff.IsUint64() {
		return d.Append(b, 'f')
	}
	if d.Negative {
		b = append(b, '-')
	}
	var scratch [24]byte
	digits := strconv.AppendUint(scratch[:0], d.Coeff.Uint64(), 10)
	if d.Exponent >= 0 {
		b = append(b, digits...)
		for i := int32(0); i < d.Exponent; i++ {
			b = append(b, '0')
		}
		return b
	}
	if left := -int(d.Exponent) - len(digits); left >= 0 {
		b = append(b, "0."...)
		for i := 0; i < left; i++ {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	off := len(digits) + int(d.Exponent)
	b = append(b, digits[:off]...)
	b = append(b, '.')
	return append(b, digits[off:]...)
}
