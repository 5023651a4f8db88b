package dativo

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Batch limits of a [RowWriter] unless [BatchRows] or [BatchBytes] say otherwise.
const (
	DefaultBatchRows  = 65536
	DefaultBatchBytes = 8 << 20
)

// SchemaOf returns the Arrow schema of the rows of struct type T: one column per exported field, in
// field order (the fields of an embedded struct in its place).
//
// A column is named by the field's `dativo:"name"` tag, else its `json:"name"` tag, else the field's
// name; `dativo:"-"` (or `json:"-"` without a dativo tag) leaves a field out. Types map as follows
// (named types by their underlying kind):
//
//	int8 … int64, int        int8 … int64 (int is int64)
//	uint8 … uint64, uint     uint8 … uint64 (uint is uint64)
//	float32, float64         float32, float64
//	bool, string, []byte     bool, utf8, binary
//	time.Time                timestamp[us, tz=UTC]
//	*T, sql.Null*, sql.Null[T]  the type of T, nullable (nil or !Valid is null)
//
// A column is nullable when its field is a pointer or a sql.Null type, or when its tag says so
// (`dativo:"amount,nullable"`; a nil []byte is then null). Any other field type is an error.
func SchemaOf[T any]() (*arrow.Schema, error) {
	plan, err := planOf(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	return plan.schema, nil
}

// MustSchemaOf is [SchemaOf] for package-level variables: it panics if T cannot be a row.
func MustSchemaOf[T any]() *arrow.Schema {
	schema, err := SchemaOf[T]()
	if err != nil {
		panic(err)
	}
	return schema
}

// RowOption changes how a [RowWriter] batches rows.
type RowOption func(*rowConfig)

type rowConfig struct {
	rows, bytes int
	mem         memory.Allocator
}

// BatchRows makes a [RowWriter] emit a batch every n rows (default [DefaultBatchRows]).
func BatchRows(n int) RowOption { return func(c *rowConfig) { c.rows = max(n, 1) } }

// BatchBytes makes a [RowWriter] emit a batch once its rows hold about n bytes of values (default
// [DefaultBatchBytes]), whichever of the two limits comes first.
func BatchBytes(n int) RowOption { return func(c *rowConfig) { c.bytes = max(n, 1) } }

// WithAllocator makes a [RowWriter] build its batches with mem (default memory.DefaultAllocator).
func WithAllocator(mem memory.Allocator) RowOption { return func(c *rowConfig) { c.mem = mem } }

// RowWriter turns Go values of struct type T into Arrow record batches of [SchemaOf] T, and hands each
// batch to an [Emit] function once it holds enough rows or bytes. It is what a Read built on
// [Stream] writes its rows to (see [StreamRows]); it is not safe for concurrent use.
type RowWriter[T any] struct {
	schema   *arrow.Schema
	builder  *array.RecordBuilder
	columns  []boundColumn
	emit     Emit
	cfg      rowConfig
	rows     int
	bytes    int
	released bool
}

type boundColumn struct {
	index  []int
	append func(v reflect.Value) int // appends one value, returns its size in bytes
}

// NewRowWriter returns a RowWriter that emits batches of T's rows to emit. Release it when done (after
// a last [RowWriter.Flush]).
func NewRowWriter[T any](emit Emit, options ...RowOption) (*RowWriter[T], error) {
	plan, err := planOf(reflect.TypeFor[T]())
	if err != nil {
		return nil, err
	}
	cfg := rowConfig{rows: DefaultBatchRows, bytes: DefaultBatchBytes, mem: memory.DefaultAllocator}
	for _, option := range options {
		option(&cfg)
	}
	w := &RowWriter[T]{schema: plan.schema, builder: array.NewRecordBuilder(cfg.mem, plan.schema), emit: emit, cfg: cfg}
	for i, c := range plan.columns {
		w.columns = append(w.columns, boundColumn{index: c.index, append: c.bind(w.builder.Field(i))})
	}
	return w, nil
}

// Schema is the schema of the batches the writer emits.
func (w *RowWriter[T]) Schema() *arrow.Schema { return w.schema }

// Append adds one row; when the batch is full it is emitted, and emit's error (the consumer has gone:
// stop then) is returned.
func (w *RowWriter[T]) Append(row T) error {
	value := reflect.ValueOf(&row).Elem()
	for _, c := range w.columns {
		w.bytes += c.append(value.FieldByIndex(c.index))
	}
	w.rows++
	if w.rows >= w.cfg.rows || w.bytes >= w.cfg.bytes {
		return w.Flush()
	}
	return nil
}

// Flush emits the rows appended since the last batch, if any.
func (w *RowWriter[T]) Flush() error {
	if w.rows == 0 {
		return nil
	}
	batch := w.builder.NewRecordBatch()
	w.rows, w.bytes = 0, 0
	return w.emit(batch)
}

// Release frees the rows not flushed and the builders. It is safe to call more than once.
func (w *RowWriter[T]) Release() {
	if !w.released {
		w.released = true
		w.builder.Release()
	}
}

// StreamRows is [Stream] for rows of struct type T: produce appends rows to a [RowWriter] (with
// options), which emits them in batches; the last batch is flushed when produce returns nil. The
// reader's schema is [SchemaOf] T; an error is returned only if T cannot be a row.
//
//	return dativo.StreamRows(ctx, func(ctx context.Context, rows *dativo.RowWriter[order]) error {
//		for _, o := range orders {
//			if err := rows.Append(o); err != nil {
//				return err // the host went away
//			}
//		}
//		return nil
//	})
func StreamRows[T any](ctx context.Context, produce func(ctx context.Context, rows *RowWriter[T]) error, options ...RowOption) (array.RecordReader, error) {
	schema, err := SchemaOf[T]()
	if err != nil {
		return nil, err
	}
	return Stream(ctx, schema, func(ctx context.Context, emit Emit) error {
		rows, err := NewRowWriter[T](emit, options...)
		if err != nil {
			return err
		}
		defer rows.Release()
		if err := produce(ctx, rows); err != nil {
			return err
		}
		return rows.Flush()
	}), nil
}

// --- from Go types to columns -----------------------------------------------------------------------------

type rowPlan struct {
	schema  *arrow.Schema
	columns []columnPlan
}

type columnPlan struct {
	index []int
	bind  func(b array.Builder) func(v reflect.Value) int
}

var timeType = reflect.TypeFor[time.Time]()

func planOf(t reflect.Type) (*rowPlan, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("dativo: a row must be a struct, not %s", t)
	}
	plan := &rowPlan{}
	var fields []arrow.Field
	if err := addColumns(t, nil, plan, &fields); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("dativo: row type %s has no exported fields", t)
	}
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.Name] {
			return nil, fmt.Errorf("dativo: row type %s has two columns named %q", t, f.Name)
		}
		seen[f.Name] = true
	}
	plan.schema = arrow.NewSchema(fields, nil)
	return plan, nil
}

func addColumns(t reflect.Type, index []int, plan *rowPlan, fields *[]arrow.Field) error {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, nullable, skip := columnTag(f)
		at := append(append([]int(nil), index...), i)
		if skip {
			continue
		}
		if !f.IsExported() { // an unexported field, or an embedded struct of an unexported type
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct && f.Type != timeType && sqlNullValue(f.Type) < 0 {
			if err := addColumns(f.Type, at, plan, fields); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		kind, null, bind, err := columnOf(f.Type)
		if err != nil {
			return fmt.Errorf("dativo: field %s.%s: %w", t, f.Name, err)
		}
		if nullable && f.Type.Kind() == reflect.Slice { // a nil []byte is null in a nullable column
			bind = nilIsNull(bind)
		}
		*fields = append(*fields, arrow.Field{Name: name, Type: kind, Nullable: nullable || null})
		plan.columns = append(plan.columns, columnPlan{index: at, bind: bind})
	}
	return nil
}

// columnTag reads a field's dativo (else json) tag: the column name, whether it is declared nullable,
// and whether the field is left out.
func columnTag(f reflect.StructField) (name string, nullable, skip bool) {
	if tag, ok := f.Tag.Lookup("dativo"); ok {
		if tag == "-" {
			return "", false, true
		}
		parts := strings.Split(tag, ",")
		for _, option := range parts[1:] {
			nullable = nullable || strings.TrimSpace(option) == "nullable"
		}
		return parts[0], nullable, false
	}
	if tag, ok := f.Tag.Lookup("json"); ok {
		if tag == "-" {
			return "", false, true
		}
		return strings.Split(tag, ",")[0], false, false
	}
	return "", false, false
}

// sqlNullValue returns the index of the value field of a database/sql Null type (sql.NullString,
// sql.Null[T] …), or -1.
func sqlNullValue(t reflect.Type) int {
	if t.Kind() == reflect.Struct && t.PkgPath() == reflect.TypeFor[sql.NullString]().PkgPath() &&
		strings.HasPrefix(t.Name(), "Null") && t.NumField() == 2 && t.Field(1).Name == "Valid" {
		return 0
	}
	return -1
}

type binder = func(b array.Builder) func(v reflect.Value) int

// columnOf returns the Arrow type of a Go type, whether it is nullable by itself, and how to append it.
func columnOf(t reflect.Type) (arrow.DataType, bool, binder, error) {
	if t.Kind() == reflect.Pointer {
		kind, null, bind, err := columnOf(t.Elem())
		if err != nil || null {
			if err == nil {
				err = fmt.Errorf("%s: a pointer to a nullable type is not a column", t)
			}
			return nil, false, nil, err
		}
		return kind, true, func(b array.Builder) func(reflect.Value) int {
			appendValue := bind(b)
			return func(v reflect.Value) int {
				if v.IsNil() {
					b.AppendNull()
					return 0
				}
				return appendValue(v.Elem())
			}
		}, nil
	}
	if i := sqlNullValue(t); i >= 0 {
		kind, null, bind, err := columnOf(t.Field(i).Type)
		if err != nil || null {
			if err == nil {
				err = fmt.Errorf("%s holds a nullable type", t)
			}
			return nil, false, nil, err
		}
		return kind, true, func(b array.Builder) func(reflect.Value) int {
			appendValue := bind(b)
			return func(v reflect.Value) int {
				if !v.Field(1).Bool() {
					b.AppendNull()
					return 0
				}
				return appendValue(v.Field(i))
			}
		}, nil
	}
	if t == timeType {
		return arrow.FixedWidthTypes.Timestamp_us, false, func(b array.Builder) func(reflect.Value) int {
			builder := b.(*array.TimestampBuilder)
			return func(v reflect.Value) int {
				builder.Append(arrow.Timestamp(v.Interface().(time.Time).UnixMicro()))
				return 8
			}
		}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return arrow.FixedWidthTypes.Boolean, false, func(b array.Builder) func(reflect.Value) int {
			builder := b.(*array.BooleanBuilder)
			return func(v reflect.Value) int { builder.Append(v.Bool()); return 1 }
		}, nil
	case reflect.Int8:
		return arrow.PrimitiveTypes.Int8, false, bindInt(func(b *array.Int8Builder, v int64) { b.Append(int8(v)) }, 1), nil
	case reflect.Int16:
		return arrow.PrimitiveTypes.Int16, false, bindInt(func(b *array.Int16Builder, v int64) { b.Append(int16(v)) }, 2), nil
	case reflect.Int32:
		return arrow.PrimitiveTypes.Int32, false, bindInt(func(b *array.Int32Builder, v int64) { b.Append(int32(v)) }, 4), nil
	case reflect.Int64, reflect.Int:
		return arrow.PrimitiveTypes.Int64, false, bindInt(func(b *array.Int64Builder, v int64) { b.Append(v) }, 8), nil
	case reflect.Uint8:
		return arrow.PrimitiveTypes.Uint8, false, bindUint(func(b *array.Uint8Builder, v uint64) { b.Append(uint8(v)) }, 1), nil
	case reflect.Uint16:
		return arrow.PrimitiveTypes.Uint16, false, bindUint(func(b *array.Uint16Builder, v uint64) { b.Append(uint16(v)) }, 2), nil
	case reflect.Uint32:
		return arrow.PrimitiveTypes.Uint32, false, bindUint(func(b *array.Uint32Builder, v uint64) { b.Append(uint32(v)) }, 4), nil
	case reflect.Uint64, reflect.Uint:
		return arrow.PrimitiveTypes.Uint64, false, bindUint(func(b *array.Uint64Builder, v uint64) { b.Append(v) }, 8), nil
	case reflect.Float32:
		return arrow.PrimitiveTypes.Float32, false, func(b array.Builder) func(reflect.Value) int {
			builder := b.(*array.Float32Builder)
			return func(v reflect.Value) int { builder.Append(float32(v.Float())); return 4 }
		}, nil
	case reflect.Float64:
		return arrow.PrimitiveTypes.Float64, false, func(b array.Builder) func(reflect.Value) int {
			builder := b.(*array.Float64Builder)
			return func(v reflect.Value) int { builder.Append(v.Float()); return 8 }
		}, nil
	case reflect.String:
		return arrow.BinaryTypes.String, false, func(b array.Builder) func(reflect.Value) int {
			builder := b.(*array.StringBuilder)
			return func(v reflect.Value) int { s := v.String(); builder.Append(s); return len(s) + 4 }
		}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return arrow.BinaryTypes.Binary, false, func(b array.Builder) func(reflect.Value) int {
				builder := b.(*array.BinaryBuilder)
				return func(v reflect.Value) int { data := v.Bytes(); builder.Append(data); return len(data) + 4 }
			}, nil
		}
	}
	return nil, false, nil, fmt.Errorf("Go type %s has no Arrow column type (use an integer, float, bool, "+
		"string, []byte or time.Time, a pointer to one, or a sql.Null type)", t)
}

func bindInt[B array.Builder](appendTo func(B, int64), size int) binder {
	return func(b array.Builder) func(reflect.Value) int {
		builder := b.(B)
		return func(v reflect.Value) int { appendTo(builder, v.Int()); return size }
	}
}

func bindUint[B array.Builder](appendTo func(B, uint64), size int) binder {
	return func(b array.Builder) func(reflect.Value) int {
		builder := b.(B)
		return func(v reflect.Value) int { appendTo(builder, v.Uint()); return size }
	}
}

func nilIsNull(bind binder) binder {
	return func(b array.Builder) func(reflect.Value) int {
		appendValue := bind(b)
		return func(v reflect.Value) int {
			if v.IsNil() {
				b.AppendNull()
				return 0
			}
			return appendValue(v)
		}
	}
}
