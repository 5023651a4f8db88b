package main

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

// numeric encodes a value the way PostgreSQL's numeric_send does.
func numeric(sign uint16, weight int16, dscale uint16, digits ...uint16) []byte {
	v := make([]byte, 8+2*len(digits))
	binary.BigEndian.PutUint16(v, uint16(len(digits)))
	binary.BigEndian.PutUint16(v[2:], uint16(weight))
	binary.BigEndian.PutUint16(v[4:], sign)
	binary.BigEndian.PutUint16(v[6:], dscale)
	for i, d := range digits {
		binary.BigEndian.PutUint16(v[8+2*i:], d)
	}
	return v
}

func TestDecodeNumeric(t *testing.T) {
	cases := []struct {
		value            []byte
		precision, scale int32
		want             string // unscaled integer, or "error"
	}{
		{numeric(0, 0, 2, 1, 5000), 12, 2, "150"},                              // 1.50
		{numeric(0x4000, 2, 2, 12, 3456, 7890, 1200), 12, 2, "-1234567890.12"}, // -1234567890.12
		{numeric(0, 0, 0), 12, 2, "0"},                                         // 0
		{numeric(0, 0, 11, 1, 5000), 38, 9, "1500000000"},                      // 1.50000000000: zeros dropped
		{numeric(0, -3, 12, 10), 38, 9, "error"},                               // 0.00000000001: a digit lost
		{numeric(0, -3, 9, 1000), 38, 9, "1"},                                  // 0.000000001
		{numeric(0, 7, 0, 1), 38, 0, "1" + strings.Repeat("0", 28)},            // 1e28
		{numeric(0, 9, 0, 99, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999), 38, 0, strings.Repeat("9", 38)},
		{numeric(0, 9, 0, 100), 38, 0, "error"},     // 1e38: 39 digits
		{numeric(0, 2, 0, 1), 12, 2, "10000000000"}, // 10^8 needs 9+2 digits
		{numeric(0, 2, 0, 10), 10, 2, "error"},      // 10^9 does not fit (10,2)
		{numeric(0xC000, 0, 0), 12, 2, "error"},     // NaN
		{numeric(0xD000, 0, 0), 12, 2, "error"},     // Infinity
		{numeric(0, -1, 38, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9900), 38, 38, "0.99999999999999999999999999999999999999"},
	}
	for i, c := range cases {
		n, err := decodeNumeric(c.value, c.precision, c.scale)
		got := "error"
		if err == nil {
			got = n.BigInt().String()
			if c.scale == 38 {
				got = n.ToString(c.scale)
			}
			if strings.HasPrefix(c.want, "-") && strings.Contains(c.want, ".") {
				got = n.ToString(c.scale)
			}
		}
		if got != c.want {
			t.Errorf("case %d: got %s (%v), want %s", i, got, err, c.want)
		}
	}
}

func TestKeyRanges(t *testing.T) {
	show := func(ranges []keyRange) string {
		parts := make([]string, len(ranges))
		for i, r := range ranges {
			parts[i] = rangePredicate("id", r)
		}
		return strings.Join(parts, " | ")
	}
	if got := show(keyRanges(1, 100, 4, nil)); got != `"id" < 26 | "id" >= 26 AND "id" < 51 | "id" >= 51 AND "id" < 76 | "id" >= 76` {
		t.Errorf("equal width: %s", got)
	}
	if got := show(keyRanges(1, 100, 2, []int64{1, 10, 20, 30, 90, 100})); got != `"id" < 30 | "id" >= 30` {
		t.Errorf("histogram: %s", got)
	}
	if got := show(keyRanges(5, 6, 8, nil)); got != `"id" < 6 | "id" >= 6` {
		t.Errorf("fewer keys than parts: %s", got)
	}
	if got := len(keyRanges(-9223372036854775808, 9223372036854775807, 3, nil)); got != 3 {
		t.Errorf("full int64 span: %d ranges", got)
	}
}

func TestMapNumericTypmod(t *testing.T) {
	policy := numericPolicy{kind: "decimal", precision: 38, scale: 9}
	for typmod, want := range map[int32]string{
		786438:                    "decimal128(12, 2)", // numeric(12,2)
		((3 << 16) | (0x7FE)) + 4: "decimal128(5, 0)",  // numeric(3,-2)
		-1:                        "decimal128(38, 9)", // numeric: the policy
		((40 << 16) | 2) + 4:      "decimal128(38, 9)", // numeric(40,2): wider than decimal128
	} {
		if got := arrowTypeName(mapNumeric(typmod, policy).arrow); got != want {
			t.Errorf("typmod %d: %s, want %s", typmod, got, want)
		}
	}
	if got := mapNumeric(-1, numericPolicy{kind: "string"}); got.arrow.ID() != arrow.STRING || got.cast != "text" {
		t.Errorf("string policy: %+v", got)
	}
}

func TestRedactDSN(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgresql://alice:s3cret@db:5432/x":          "postgresql://alice:***@db:5432/x",
		"postgresql://db/x?user=a&password=s3cr":       "postgresql://db/x?user=a&password=***",
		"host=db password='a b' user=x":                "host=db password=*** user=x",
		"password=s3cret host=db":                      "password=*** host=db",
		"postgresql://postgres:@/postgres?host=/tmp/x": "postgresql://postgres:***@/postgres?host=/tmp/x",
	} {
		if got := redactDSN(dsn); got != want {
			t.Errorf("%s: %s, want %s", dsn, got, want)
		}
	}
}

func TestSQLText(t *testing.T) {
	if !hasUnquotedDot("public.orders") || hasUnquotedDot(`"a.b"`) || !hasUnquotedDot(`"a.b".c`) {
		t.Error("hasUnquotedDot")
	}
	if got := quoteLiteral(`it's a \ test`); got != `E'it''s a \\ test'` {
		t.Errorf("quoteLiteral: %s", got)
	}
	c := column{name: `we"ird`, cast: "", sqlType: "timestamp", bounds: &[2]string{"-infinity", "294247-01-01"}}
	want := `CASE WHEN ("we""ird" > E'-infinity' AND "we""ird" < E'294247-01-01') IS FALSE THEN ` +
		`CAST(E'dativo: column we"ird holds a date or timestamp that Arrow cannot represent: ' || "we""ird"::text AS timestamp) ` +
		`ELSE "we""ird" END AS "we""ird"`
	if got := columnExpression(c); got != want {
		t.Errorf("columnExpression:\n%s\n%s", got, want)
	}
	if got := afterPredicate([]string{"ts", "id"}, []string{"'x'", "'1'"}); got != `("ts", "id") > ('x', '1')` {
		t.Errorf("afterPredicate: %s", got)
	}
	if got := fmt.Sprint(digits(0), digits(9), digits(10), digits(99999999999999999)); got != "0 1 2 17" {
		t.Errorf("digits: %s", got)
	}
	for want, v := range map[string][]byte{
		"1.5": numeric(0, 0, 1, 1, 5000), "-0.00000000001": numeric(0x4000, -3, 11, 10),
		"100000000": numeric(0, 2, 0, 1), "12345.678": numeric(0, 1, 3, 1, 2345, 6780), "0": numeric(0, 0, 0),
	} {
		if got := numericText(v); got != want {
			t.Errorf("numericText: %s, want %s", got, want)
		}
	}
}
