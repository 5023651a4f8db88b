package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	dativo "github.com/dativo-io/dativo/sdk/go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The PostgreSQL → Arrow type mapping of the built-in reader (src/dativo/readers/postgres/catalog.py),
// decided from pg_catalog. go_postgres reads every scalar type the built-in reads, with the same Arrow
// type and nullability: native types in binary form, numeric as decimal128 (or the numeric option),
// oid as int64, and every other type (json, enums, inet, money …) through the same ::text cast.
// Arrays are refused with a PluginFailed naming the column, a limitation of this plugin: with
// fallback: default the host reruns the job with the built-in reader, which reads them as lists.
// Pseudo-types are a ConfigError, as in the built-in reader (no reader can read them).

var (
	timestampUS   = &arrow.TimestampType{Unit: arrow.Microsecond}
	timestampTZUS = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
)

type nativeType struct {
	arrow arrow.DataType
	name  string
}

// native maps built-in type oids (stable since forever; see pg_type.dat) to their Arrow type.
var native = map[uint32]nativeType{
	16:   {arrow.FixedWidthTypes.Boolean, "bool"},
	17:   {arrow.BinaryTypes.Binary, "bytea"},
	19:   {arrow.BinaryTypes.String, "name"},
	20:   {arrow.PrimitiveTypes.Int64, "int8"},
	21:   {arrow.PrimitiveTypes.Int16, "int2"},
	23:   {arrow.PrimitiveTypes.Int32, "int4"},
	25:   {arrow.BinaryTypes.String, "text"},
	700:  {arrow.PrimitiveTypes.Float32, "float4"},
	701:  {arrow.PrimitiveTypes.Float64, "float8"},
	1042: {arrow.BinaryTypes.String, "bpchar"},
	1043: {arrow.BinaryTypes.String, "varchar"},
	1082: {arrow.FixedWidthTypes.Date32, "date"},
	1083: {arrow.FixedWidthTypes.Time64us, "time"},
	1114: {timestampUS, "timestamp"},
	1184: {timestampTZUS, "timestamptz"},
	1186: {arrow.FixedWidthTypes.MonthDayNanoInterval, "interval"},
	2950: {extensions.NewUUIDType(), "uuid"},
}

const (
	numericOID = 1700
	oidOID     = 26
)

// bounds are the exclusive limits of the values the built-in reader can turn into Arrow; kept the same
// so both readers refuse the same rows.
var bounds = map[uint32][2]string{
	1082: {"-infinity", "5874000-01-01"},
	1114: {"-infinity", "294247-01-01"},
	1184: {"-infinity", "294247-01-01 00:00:00+00"},
}

// column is one output column: its Arrow field and how the SELECT list produces it.
type column struct {
	name    string
	pgType  string // the declared type as PostgreSQL prints it (for messages and literals)
	field   arrow.Field
	cast    string // SQL type the SELECT list casts the column to, or ""
	sqlType string // SQL type of the selected value after cast
	bounds  *[2]string
}

// relation is a table or query resolved against the catalog.
type relation struct {
	name       string // schema.table, or "query"
	source     string // the FROM item
	columns    []column
	primaryKey []string
	table      *[2]string // (schema, table); nil for a query
}

func (r *relation) schema() *arrow.Schema {
	fields := make([]arrow.Field, len(r.columns))
	for i, c := range r.columns {
		fields[i] = c.field
	}
	return arrow.NewSchema(fields, nil)
}

func (r *relation) column(name string) (column, bool) {
	for _, c := range r.columns {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

// cursorCandidates are the integer, date and timestamp columns.
func (r *relation) cursorCandidates() []string {
	out := []string{}
	for _, c := range r.columns {
		switch c.field.Type.ID() {
		case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
			arrow.DATE32, arrow.DATE64, arrow.TIMESTAMP:
			out = append(out, c.name)
		}
	}
	return out
}

// integerKey is the primary-key column if the key is one integer column (key-range splits need that).
func (r *relation) integerKey() string {
	if r.table == nil || len(r.primaryKey) != 1 {
		return ""
	}
	c, _ := r.column(r.primaryKey[0])
	switch c.field.Type.ID() {
	case arrow.INT16, arrow.INT32, arrow.INT64:
		return c.name
	}
	return ""
}

func (r *relation) dataset() dativo.Dataset {
	pk := append([]string{}, r.primaryKey...)
	return dativo.Dataset{Name: r.name, Schema: r.schema(), PrimaryKey: pk, CursorCandidates: r.cursorCandidates()}
}

type pgType struct {
	name              string
	typtype, category string
	basetype, elem    uint32
	typmod            int32
}

const typesSQL = `
WITH RECURSIVE t(oid) AS (
    SELECT unnest($1::int8[])::oid
  UNION
    SELECT x.oid FROM pg_catalog.pg_type p JOIN t ON p.oid = t.oid
    CROSS JOIN LATERAL (VALUES (p.typbasetype), (p.typelem)) AS x(oid)
    WHERE x.oid <> 0
)
SELECT p.oid::int8, p.typname::text, p.typtype::text, p.typcategory::text, p.typbasetype::int8,
       p.typtypmod, p.typelem::int8
FROM pg_catalog.pg_type p WHERE p.oid IN (SELECT oid FROM t)`

func loadTypes(ctx context.Context, conn *pgx.Conn, oids []uint32) (map[uint32]pgType, error) {
	ids := make([]int64, len(oids))
	for i, o := range oids {
		ids[i] = int64(o)
	}
	rows, err := conn.Query(ctx, typesSQL, ids)
	if err != nil {
		return nil, err
	}
	types := map[uint32]pgType{}
	for rows.Next() {
		var oid, base, elem int64
		var t pgType
		if err := rows.Scan(&oid, &t.name, &t.typtype, &t.category, &base, &t.typmod, &elem); err != nil {
			rows.Close()
			return nil, err
		}
		t.basetype, t.elem = uint32(base), uint32(elem)
		types[uint32(oid)] = t
	}
	return types, rows.Err()
}

func resolveDomain(oid uint32, typmod int32, types map[uint32]pgType) (uint32, int32) {
	for types[oid].typtype == "d" {
		if typmod < 0 {
			typmod = types[oid].typmod
		}
		oid = types[oid].basetype
	}
	return oid, typmod
}

type mapped struct {
	arrow   arrow.DataType
	cast    string
	sqlType string
	bounds  *[2]string
}

func mapNumeric(typmod int32, policy numericPolicy) mapped {
	if typmod >= 4 {
		precision := ((typmod - 4) >> 16) & 0xFFFF
		scale := (((typmod - 4) & 0x7FF) ^ 1024) - 1024 // 11-bit signed since PostgreSQL 15
		if scale < 0 {                                  // numeric(3,-2) holds multiples of 100 up to 99900
			precision, scale = precision-scale, 0
		}
		precision = max(precision, scale) // numeric(2,4) holds 0.00xx
		if precision <= 38 {
			return mapped{arrow: &arrow.Decimal128Type{Precision: precision, Scale: scale}, sqlType: "numeric"}
		}
	}
	switch policy.kind {
	case "string":
		return mapped{arrow: arrow.BinaryTypes.String, cast: "text", sqlType: "text"}
	case "float64":
		return mapped{arrow: arrow.PrimitiveTypes.Float64, cast: "float8", sqlType: "float8"}
	}
	return mapped{arrow: &arrow.Decimal128Type{Precision: policy.precision, Scale: policy.scale}, sqlType: "numeric"}
}

// mapColumn decides the Arrow field and SELECT expression of one column.
func mapColumn(name string, oid uint32, typmod int32, notNull bool, pgTypeName string,
	types map[uint32]pgType, policy numericPolicy, dataset string) (column, error) {
	base, baseTypmod := resolveDomain(oid, typmod, types)
	info := types[base]
	if info.category == "A" && info.elem != 0 {
		// A limitation of this plugin, not of the job: PluginFailed, so fallback: default can use the built-in.
		return column{}, dativo.PluginFailed(
			fmt.Sprintf("Column %s of %s has type %s: go_postgres does not read arrays", name, dataset, pgTypeName),
			"Set reader.fallback: default to read this table with the built-in postgres reader (arrays become "+
				"Arrow lists), or read it through a 'query:' that converts the column (for example "+quoteIdent(name)+"::text).")
	}
	var m mapped
	switch {
	case native[base].arrow != nil:
		m = mapped{arrow: native[base].arrow, sqlType: native[base].name}
		if b, ok := bounds[base]; ok {
			m.bounds = &b
		}
	case base == numericOID:
		m = mapNumeric(baseTypmod, policy)
	case base == oidOID:
		m = mapped{arrow: arrow.PrimitiveTypes.Int64, cast: "int8", sqlType: "int8"}
	case info.typtype == "p":
		return column{}, dativo.ConfigError(
			fmt.Sprintf("Column %s of %s has type %s, which has no Arrow mapping", name, dataset, pgTypeName),
			fmt.Sprintf("Read it through a 'query:' that casts it to a concrete type (%s::text).", quoteIdent(name)))
	default: // json, jsonb, enums, "char", network types, money, bit strings, geometry, ranges, composites …
		m = mapped{arrow: arrow.BinaryTypes.String, cast: "text", sqlType: "text"}
	}
	return column{
		name: name, pgType: pgTypeName,
		field: arrow.Field{Name: name, Type: m.arrow, Nullable: !notNull},
		cast:  m.cast, sqlType: m.sqlType, bounds: m.bounds,
	}, nil
}

func hasUnquotedDot(name string) bool {
	quoted := false
	for _, r := range name {
		switch {
		case r == '"':
			quoted = !quoted
		case r == '.' && !quoted:
			return true
		}
	}
	return false
}

// inSavepoint runs fn so that an error in it does not end the snapshot transaction.
func inSavepoint(ctx context.Context, conn *pgx.Conn, fn func() error) error {
	if _, err := conn.Exec(ctx, "SAVEPOINT dativo_lookup"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rollbackErr := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT dativo_lookup"); rollbackErr != nil {
			return errors.Join(err, rollbackErr)
		}
		return err
	}
	_, err := conn.Exec(ctx, "RELEASE SAVEPOINT dativo_lookup")
	return err
}

const tableSQL = `
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = pg_catalog.to_regclass($1)`

const columnsSQL = `
SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull,
       pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

const primaryKeySQL = `
SELECT a.attname::text
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = $1::int8::oid AND i.indisprimary
ORDER BY k.ord`

var readableKinds = map[string]bool{"r": true, "p": true, "v": true, "m": true, "f": true}

// tableRelation resolves one entry of tables: against the catalog. Unqualified names are looked up in
// schema public; identifiers follow SQL rules (unquoted names fold to lower case).
func tableRelation(ctx context.Context, conn *pgx.Conn, name string, policy numericPolicy) (*relation, error) {
	qualified := name
	if !hasUnquotedDot(name) {
		qualified = "public." + name
	}
	var oid int64
	var schemaName, tableName, kind string
	found := true
	err := inSavepoint(ctx, conn, func() error {
		err := conn.QueryRow(ctx, tableSQL, qualified).Scan(&oid, &schemaName, &tableName, &kind)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return nil, dativo.ConfigError(fmt.Sprintf("Table name %q in source.tables is not valid: %s", name, pgErr.Message), "")
	} else if err != nil {
		return nil, err
	}
	if !found {
		return nil, dativo.ConfigError(
			fmt.Sprintf("Table %s (from source.tables) does not exist, or is not visible to this user", qualified),
			`Check the spelling and the schema; quote mixed-case names, e.g. 'public."Orders"'.`)
	}
	dataset := schemaName + "." + tableName
	if !readableKinds[kind] {
		return nil, dativo.ConfigError(fmt.Sprintf("%s (from source.tables) is not a table or view (relkind '%s')", dataset, kind), "")
	}
	type attribute struct {
		name    string
		oid     int64
		typmod  int32
		notNull bool
		pgType  string
	}
	var attributes []attribute
	rows, err := conn.Query(ctx, columnsSQL, oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var a attribute
		if err := rows.Scan(&a.name, &a.oid, &a.typmod, &a.notNull, &a.pgType); err != nil {
			rows.Close()
			return nil, err
		}
		attributes = append(attributes, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var primaryKey []string
	rows, err = conn.Query(ctx, primaryKeySQL, oid)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			rows.Close()
			return nil, err
		}
		primaryKey = append(primaryKey, k)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	oids := make([]uint32, len(attributes))
	for i, a := range attributes {
		oids[i] = uint32(a.oid)
	}
	types, err := loadTypes(ctx, conn, oids)
	if err != nil {
		return nil, err
	}
	r := &relation{
		name:       dataset,
		source:     quoteIdent(schemaName) + "." + quoteIdent(tableName),
		primaryKey: primaryKey,
		table:      &[2]string{schemaName, tableName},
	}
	for _, a := range attributes {
		c, err := mapColumn(a.name, uint32(a.oid), a.typmod, a.notNull, a.pgType, types, policy, dataset)
		if err != nil {
			return nil, err
		}
		r.columns = append(r.columns, c)
	}
	return r, nil
}

// queryRelation describes query: without running it (the statement is only prepared); every column
// is nullable.
func queryRelation(ctx context.Context, conn *pgx.Conn, query string, policy numericPolicy) (*relation, error) {
	source := "(" + query + ") AS q"
	var fields []pgconn.FieldDescription
	var formatted []string
	var types map[uint32]pgType
	err := inSavepoint(ctx, conn, func() error {
		description, err := conn.PgConn().Prepare(ctx, "", "SELECT * FROM "+source+" LIMIT 0", nil)
		if err != nil {
			return err
		}
		fields = description.Fields
		oids := make([]int64, len(fields))
		mods := make([]int32, len(fields))
		plain := make([]uint32, len(fields))
		for i, f := range fields {
			oids[i], mods[i], plain[i] = int64(f.DataTypeOID), f.TypeModifier, f.DataTypeOID
		}
		rows, err := conn.Query(ctx, `SELECT pg_catalog.format_type(t::oid, m) FROM unnest($1::int8[], $2::int4[])
			WITH ORDINALITY AS u(t, m, o) ORDER BY o`, oids, mods)
		if err != nil {
			return err
		}
		formatted, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		types, err = loadTypes(ctx, conn, plain)
		return err
	})
	if err != nil {
		detail := err.Error()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			detail = pgErr.Message
		}
		return nil, dativo.ConfigError("source.query cannot be run: "+oneParagraph(detail),
			"Run it in psql to check it; it must be a single SELECT (no trailing statements).")
	}
	counts := map[string]int{}
	for _, f := range fields {
		counts[f.Name]++
	}
	var duplicates []string
	for n, c := range counts {
		if c > 1 {
			duplicates = append(duplicates, n)
		}
	}
	if len(duplicates) > 0 {
		sort.Strings(duplicates)
		return nil, dativo.ConfigError("source.query returns several columns named "+strings.Join(duplicates, ", "),
			"Give every output column a distinct name with AS.")
	}
	r := &relation{name: "query", source: source}
	for i, f := range fields {
		c, err := mapColumn(f.Name, f.DataTypeOID, f.TypeModifier, false, formatted[i], types, policy, "query")
		if err != nil {
			return nil, err
		}
		r.columns = append(r.columns, c)
	}
	return r, nil
}
