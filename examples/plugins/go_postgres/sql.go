package main

import (
	"fmt"
	"math/big"
	"sort"
	"strings"
)

// SQL text, ported from the built-in reader (src/dativo/readers/postgres/sql.py) so both readers run
// the same statements: the same SELECT list with the same value guards, the same key ranges, the same
// snapshot statements.

// quoteIdent quotes an SQL identifier (always, so case and special characters survive).
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// quoteLiteral quotes a string literal; the E” form is right whatever standard_conforming_strings is.
func quoteLiteral(text string) string {
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(text, `\`, `\\`), "'", "''") + "'"
}

// columnExpression is the SELECT-list item that produces c in its Arrow-ready form. Dates and
// timestamps Arrow cannot hold (infinity, years past 294246) make PostgreSQL itself raise an error
// that starts with "dativo:" and names the column.
func columnExpression(c column) string {
	value := quoteIdent(c.name)
	if c.cast != "" {
		value += "::" + c.cast
	}
	if c.bounds == nil {
		return value + " AS " + quoteIdent(c.name)
	}
	low, high := quoteLiteral(c.bounds[0]), quoteLiteral(c.bounds[1])
	failure := fmt.Sprintf("CAST(%s || %s::text AS %s)",
		quoteLiteral("dativo: column "+c.name+" holds a date or timestamp that Arrow cannot represent: "), value, c.sqlType)
	// IS FALSE: NULL values pass.
	return fmt.Sprintf("CASE WHEN (%s > %s AND %s < %s) IS FALSE THEN %s ELSE %s END AS %s",
		value, low, value, high, failure, value, quoteIdent(c.name))
}

// selectSQL is the SELECT of one split: every column of r, where all predicates hold.
func selectSQL(r *relation, predicates ...string) string {
	items := make([]string, len(r.columns))
	for i, c := range r.columns {
		items[i] = columnExpression(c)
	}
	return "SELECT " + strings.Join(items, ", ") + " FROM " + r.source + where(predicates)
}

func where(predicates []string) string {
	var conditions []string
	for _, p := range predicates {
		if p != "" {
			conditions = append(conditions, "("+p+")")
		}
	}
	if len(conditions) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conditions, " AND ")
}

// minMaxSQL finds the smallest and largest key, to plan key ranges.
func minMaxSQL(r *relation, key string, predicates ...string) string {
	k := quoteIdent(key)
	return "SELECT min(" + k + ")::int8, max(" + k + ")::int8 FROM " + r.source + where(predicates)
}

// keyRange is [start, end) with nil for an open end.
type keyRange struct{ start, end *int64 }

// keyRanges divides the keys low..high into at most parts ranges. With a histogram (the planner's
// equi-depth histogram_bounds of the key) the cuts follow it, so ranges hold about as many rows each
// even when keys are skewed; otherwise they have equal width. The first range has no lower bound and
// the last no upper bound, so together they cover every key whatever the statistics say.
func keyRanges(low, high int64, parts int, histogram []int64) []keyRange {
	span := new(big.Int).Sub(big.NewInt(high), big.NewInt(low))
	span.Add(span, big.NewInt(1))
	if span.Cmp(big.NewInt(int64(parts))) < 0 {
		parts = int(span.Int64())
	}
	parts = max(parts, 1)
	seen := map[int64]bool{}
	var inside []int64
	for _, b := range histogram {
		if low < b && b <= high && !seen[b] {
			seen[b] = true
			inside = append(inside, b)
		}
	}
	sort.Slice(inside, func(i, j int) bool { return inside[i] < inside[j] })
	var cuts []int64
	if len(inside) >= parts-1 && len(inside) > 0 {
		picked := map[int64]bool{}
		for i := 1; i < parts; i++ {
			b := inside[len(inside)*i/parts]
			if !picked[b] {
				picked[b] = true
				cuts = append(cuts, b)
			}
		}
		sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	} else {
		for i := 1; i < parts; i++ {
			cut := new(big.Int).Mul(span, big.NewInt(int64(i)))
			cut.Quo(cut, big.NewInt(int64(parts)))
			cut.Add(cut, big.NewInt(low))
			cuts = append(cuts, cut.Int64())
		}
	}
	ranges := make([]keyRange, 0, len(cuts)+1)
	var start *int64
	for i := range cuts {
		ranges = append(ranges, keyRange{start, &cuts[i]})
		start = &cuts[i]
	}
	return append(ranges, keyRange{start, nil})
}

// rangePredicate is start <= key < end ("" when the range is unbounded).
func rangePredicate(key string, r keyRange) string {
	var parts []string
	if r.start != nil {
		parts = append(parts, fmt.Sprintf("%s >= %d", quoteIdent(key), *r.start))
	}
	if r.end != nil {
		parts = append(parts, fmt.Sprintf("%s < %d", quoteIdent(key), *r.end))
	}
	return strings.Join(parts, " AND ")
}

// afterPredicate selects rows strictly after a watermark: (cursor, key…) > (value, key value…) as a
// row comparison. literals are SQL literals already. A NULL cursor never compares greater.
func afterPredicate(columns, literals []string) string {
	if len(columns) == 1 {
		return quoteIdent(columns[0]) + " > " + literals[0]
	}
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = quoteIdent(c)
	}
	return "(" + strings.Join(names, ", ") + ") > (" + strings.Join(literals, ", ") + ")"
}

// beginSQL opens the transaction of a split; snapshotStatements must follow before anything else.
const beginSQL = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

// histogramSQL reads the planner's histogram of a column ({b1,b2,…} as text; no row before ANALYZE).
const histogramSQL = `SELECT histogram_bounds::text FROM pg_catalog.pg_stats
WHERE schemaname = $1 AND tablename = $2 AND attname = $3
ORDER BY inherited DESC LIMIT 1`

// sessionSettings make the text form of values (json, ranges, money …) the same on every run; the
// same as the built-in's SESSION_SETTINGS, applied with SET LOCAL semantics inside each read.
var sessionSettings = [][2]string{
	{"TimeZone", "UTC"},
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"extra_float_digits", "1"},
	{"lc_monetary", "C"},
}

// snapshotStatements follow beginSQL: adopt the coordinator's exported snapshot (as pg_dump -j does)
// and fix the session settings that shape the text form of values.
func snapshotStatements(snapshot string) string {
	calls := make([]string, len(sessionSettings))
	for i, kv := range sessionSettings {
		calls[i] = fmt.Sprintf("pg_catalog.set_config(%s, %s, true)", quoteLiteral(kv[0]), quoteLiteral(kv[1]))
	}
	return "SET TRANSACTION SNAPSHOT " + quoteLiteral(snapshot) + "; SELECT " + strings.Join(calls, ", ")
}
