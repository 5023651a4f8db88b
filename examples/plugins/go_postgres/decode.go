package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	dativo "github.com/dativo-io/dativo/sdk/go"
)

// Decoding of PostgreSQL's binary wire format straight into Arrow builders, one function per Arrow
// type of the mapping in catalog.go. Values are big-endian; dates and timestamps count from 2000-01-01.

const (
	pgEpochDays   = 10957           // days from 1970-01-01 to 2000-01-01
	pgEpochMicros = 946684800000000 // microseconds from 1970-01-01 to 2000-01-01
)

// decoder appends one column's values to its builder.
type decoder struct {
	field   arrow.Field
	oids    map[uint32]bool // wire types this column may arrive as
	builder array.Builder
	decode  func(v []byte) error
}

func newDecoder(field arrow.Field, mem memory.Allocator) (*decoder, error) {
	d := &decoder{field: field}
	accept := func(oids ...uint32) {
		d.oids = map[uint32]bool{}
		for _, o := range oids {
			d.oids[o] = true
		}
	}
	switch t := field.Type.(type) {
	case *arrow.BooleanType:
		b := array.NewBooleanBuilder(mem)
		accept(16)
		d.builder, d.decode = b, fixed(1, func(v []byte) { b.Append(v[0] != 0) })
	case *arrow.Int16Type:
		b := array.NewInt16Builder(mem)
		accept(21)
		d.builder, d.decode = b, fixed(2, func(v []byte) { b.Append(int16(binary.BigEndian.Uint16(v))) })
	case *arrow.Int32Type:
		b := array.NewInt32Builder(mem)
		accept(23)
		d.builder, d.decode = b, fixed(4, func(v []byte) { b.Append(int32(binary.BigEndian.Uint32(v))) })
	case *arrow.Int64Type:
		b := array.NewInt64Builder(mem)
		accept(20)
		d.builder, d.decode = b, fixed(8, func(v []byte) { b.Append(int64(binary.BigEndian.Uint64(v))) })
	case *arrow.Float32Type:
		b := array.NewFloat32Builder(mem)
		accept(700)
		d.builder, d.decode = b, fixed(4, func(v []byte) { b.Append(math.Float32frombits(binary.BigEndian.Uint32(v))) })
	case *arrow.Float64Type:
		b := array.NewFloat64Builder(mem)
		accept(701)
		d.builder, d.decode = b, fixed(8, func(v []byte) { b.Append(math.Float64frombits(binary.BigEndian.Uint64(v))) })
	case *arrow.StringType:
		b := array.NewStringBuilder(mem)
		accept(25, 1043, 1042, 19)
		d.builder, d.decode = b, func(v []byte) error { b.BinaryBuilder.Append(v); return nil }
	case *arrow.BinaryType:
		b := array.NewBinaryBuilder(mem, arrow.BinaryTypes.Binary)
		accept(17)
		d.builder, d.decode = b, func(v []byte) error { b.Append(v); return nil }
	case *arrow.Date32Type:
		b := array.NewDate32Builder(mem)
		accept(1082)
		d.builder, d.decode = b, fixed(4, func(v []byte) {
			b.Append(arrow.Date32(int32(binary.BigEndian.Uint32(v)) + pgEpochDays))
		})
	case *arrow.Time64Type:
		b := array.NewTime64Builder(mem, t)
		accept(1083)
		d.builder, d.decode = b, fixed(8, func(v []byte) { b.Append(arrow.Time64(binary.BigEndian.Uint64(v))) })
	case *arrow.TimestampType:
		b := array.NewTimestampBuilder(mem, t)
		if t.TimeZone == "" {
			accept(1114)
		} else {
			accept(1184)
		}
		d.builder = b
		d.decode = func(v []byte) error {
			if len(v) != 8 {
				return errSize(8, v)
			}
			micros := int64(binary.BigEndian.Uint64(v))
			if micros > math.MaxInt64-pgEpochMicros {
				return fmt.Errorf("timestamp beyond what Arrow can hold")
			}
			b.Append(arrow.Timestamp(micros + pgEpochMicros))
			return nil
		}
	case *arrow.MonthDayNanoIntervalType:
		b := array.NewMonthDayNanoIntervalBuilder(mem)
		accept(1186)
		d.builder = b
		d.decode = func(v []byte) error {
			if len(v) != 16 {
				return errSize(16, v)
			}
			micros := int64(binary.BigEndian.Uint64(v))
			if micros > math.MaxInt64/1000 || micros < math.MinInt64/1000 {
				return fmt.Errorf("interval of %d µs overflows 64-bit nanoseconds", micros)
			}
			b.Append(arrow.MonthDayNanoInterval{
				Months:      int32(binary.BigEndian.Uint32(v[12:])),
				Days:        int32(binary.BigEndian.Uint32(v[8:])),
				Nanoseconds: micros * 1000,
			})
			return nil
		}
	case *extensions.UUIDType:
		b := extensions.NewUUIDBuilder(mem)
		accept(2950)
		d.builder = b
		d.decode = fixed(16, func(v []byte) { b.AppendBytes([16]byte(v)) })
	case *arrow.Decimal128Type:
		b := array.NewDecimal128Builder(mem, t)
		accept(1700)
		d.builder = b
		d.decode = func(v []byte) error {
			n, err := decodeNumeric(v, t.Precision, t.Scale)
			if err != nil {
				return err
			}
			b.Append(n)
			return nil
		}
	default:
		return nil, dativo.PluginFailed(fmt.Sprintf("go_postgres cannot build Arrow type %s (column %s)", field.Type, field.Name), "")
	}
	return d, nil
}

func fixed(size int, appendValue func(v []byte)) func(v []byte) error {
	return func(v []byte) error {
		if len(v) != size {
			return errSize(size, v)
		}
		appendValue(v)
		return nil
	}
}

func errSize(size int, v []byte) error {
	return fmt.Errorf("a binary value of %d bytes where %d were expected", len(v), size)
}

// Sign words of the binary numeric format.
const (
	numericPositive = 0x0000
	numericNegative = 0x4000
	numericNaN      = 0xC000
	numericPosInf   = 0xD000
	numericNegInf   = 0xF000
)

// decodeNumeric turns PostgreSQL's binary numeric (base-10000 digits) into a decimal128 with the given
// precision and scale, exactly: a value with more digits than fit, NaN or ±Infinity is an error (as
// Arrow's cast is, for the built-in reader).
func decodeNumeric(v []byte, precision, scale int32) (decimal128.Num, error) {
	if len(v) < 8 {
		return decimal128.Num{}, errSize(8, v)
	}
	ndigits := int(binary.BigEndian.Uint16(v))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	if len(v) != 8+2*ndigits {
		return decimal128.Num{}, errSize(8+2*ndigits, v)
	}
	switch sign {
	case numericNaN:
		return decimal128.Num{}, fmt.Errorf("NaN")
	case numericPosInf:
		return decimal128.Num{}, fmt.Errorf("Infinity")
	case numericNegInf:
		return decimal128.Num{}, fmt.Errorf("-Infinity")
	case numericPositive, numericNegative:
	default:
		return decimal128.Num{}, fmt.Errorf("unknown numeric sign 0x%04x", sign)
	}
	if ndigits == 0 {
		return decimal128.Num{}, nil
	}
	// value = N × 10^(4·(weight-ndigits+1)), with N the digits read as one base-10000 integer.
	shift := 4*(weight-ndigits+1) + int(scale) // unscaled = N × 10^shift
	var n decimal128.Num
	if ndigits <= 4 { // N < 10^16: the common case, without allocation
		var u uint64
		for i := 0; i < ndigits; i++ {
			u = u*10000 + uint64(binary.BigEndian.Uint16(v[8+2*i:]))
		}
		switch {
		case u == 0:
		case shift >= 0:
			if digits(u)+shift > int(precision) {
				return decimal128.Num{}, errNumericFit(v, precision, scale)
			}
			n = decimal128.FromU64(u).Mul(decimal128.GetScaleMultiplier(shift))
		case -shift >= 20:
			if u != 0 {
				return decimal128.Num{}, errNumericFit(v, precision, scale)
			}
		default:
			p := pow10[-shift]
			if u%p != 0 {
				return decimal128.Num{}, errNumericFit(v, precision, scale)
			}
			u /= p
			if digits(u) > int(precision) {
				return decimal128.Num{}, errNumericFit(v, precision, scale)
			}
			n = decimal128.FromU64(u)
		}
	} else {
		b := new(big.Int)
		tenThousand := big.NewInt(10000)
		for i := 0; i < ndigits; i++ {
			b.Mul(b, tenThousand).Add(b, big.NewInt(int64(binary.BigEndian.Uint16(v[8+2*i:]))))
		}
		if shift >= 0 {
			b.Mul(b, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(shift)), nil))
		} else {
			var rem big.Int
			b.QuoRem(b, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-shift)), nil), &rem)
			if rem.Sign() != 0 {
				return decimal128.Num{}, errNumericFit(v, precision, scale)
			}
		}
		if len(b.String()) > int(precision) {
			return decimal128.Num{}, errNumericFit(v, precision, scale)
		}
		n = decimal128.FromBigInt(b)
	}
	if sign == numericNegative {
		n = n.Negate()
	}
	return n, nil
}

var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for i := 1; i < 20; i++ {
		p[i] = p[i-1] * 10
	}
	return
}()

// digits is the number of decimal digits of u (0 has none).
func digits(u uint64) int {
	if u == 0 {
		return 0
	}
	d := (bits.Len64(u) * 1233) >> 12 // ≈ log10
	if u >= pow10[d] {
		d++
	}
	return d
}

func errNumericFit(v []byte, precision, scale int32) error {
	return fmt.Errorf("numeric %s has more digits than decimal128(%d, %d) holds", numericText(v), precision, scale)
}

// numericText renders a binary numeric exactly, for messages.
func numericText(v []byte) string {
	ndigits := int(binary.BigEndian.Uint16(v))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	if ndigits == 0 {
		return "0"
	}
	b := new(big.Int)
	for i := 0; i < ndigits; i++ {
		b.Mul(b, big.NewInt(10000)).Add(b, big.NewInt(int64(binary.BigEndian.Uint16(v[8+2*i:]))))
	}
	text, exp := b.String(), 4*(weight-ndigits+1)
	if exp >= 0 {
		text += strings.Repeat("0", exp)
	} else {
		if len(text) <= -exp {
			text = strings.Repeat("0", -exp-len(text)+1) + text
		}
		text = strings.TrimRight(text[:len(text)+exp]+"."+text[len(text)+exp:], "0")
		text = strings.TrimSuffix(text, ".")
	}
	if binary.BigEndian.Uint16(v[4:]) == numericNegative {
		text = "-" + text
	}
	return text
}

// arrowTypeName prints a type as pyarrow does, so messages read the same as the built-in reader's.
func arrowTypeName(t arrow.DataType) string {
	if d, ok := t.(*arrow.Decimal128Type); ok {
		return fmt.Sprintf("decimal128(%d, %d)", d.Precision, d.Scale)
	}
	return t.String()
}

// valueError is the error for a value that does not fit its column's Arrow type.
func valueError(dataset string, field arrow.Field, err error) error {
	hint := ""
	if _, ok := field.Type.(*arrow.Decimal128Type); ok {
		hint = "Numeric values must fit the decimal type exactly (NaN and Infinity never fit). For numeric " +
			"columns declared without precision, set the reader option numeric to a wider 'decimal(P,S)', " +
			"'string' (exact text) or 'float64' (approximate); otherwise read the column through a 'query:' " +
			"with an explicit cast such as col::text."
	}
	return dativo.PluginFailed(fmt.Sprintf("Column %s of %s holds a value that does not fit Arrow type %s: %v",
		field.Name, dataset, arrowTypeName(field.Type), err), hint)
}
