package dativo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

type Audit struct {
	CreatedBy string `json:"created_by"`
}

type audit struct{ Hidden string } // an unexported embedded type: left out, as encoding/json would not be

type order struct {
	ID       int64     `json:"id"`
	Customer string    `dativo:"customer_name" json:"customer"`
	Amount   float64   `dativo:",nullable"`
	Paid     bool      `json:"paid"`
	Placed   time.Time `json:"placed"`
	Note     *string   `json:"note"`
	Items    int32     `json:"items"`
	Code     uint8     `json:"code"`
	Blob     []byte    `dativo:"blob,nullable"`
	Coupon   sql.NullString
	Discount sql.Null[float32] `json:"discount"`
	Ignored  string            `dativo:"-"`
	Skipped  string            `json:"-"`
	secret   string
	Audit
	audit
}

func TestSchemaOfMapsFieldsToColumns(t *testing.T) {
	schema, err := SchemaOf[order]()
	if err != nil {
		t.Fatal(err)
	}
	want := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "customer_name", Type: arrow.BinaryTypes.String},
		{Name: "Amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: "paid", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "placed", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}},
		{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "items", Type: arrow.PrimitiveTypes.Int32},
		{Name: "code", Type: arrow.PrimitiveTypes.Uint8},
		{Name: "blob", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "Coupon", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "discount", Type: arrow.PrimitiveTypes.Float32, Nullable: true},
		{Name: "created_by", Type: arrow.BinaryTypes.String},
	}, nil)
	if !schema.Equal(want) {
		t.Fatalf("schema\n%s\nwant\n%s", schema, want)
	}
	_ = order{secret: "", audit: audit{}}
}

func TestSchemaOfRefusesWhatIsNoColumn(t *testing.T) {
	type nested struct{ Tags []string }
	type twice struct {
		A int `dativo:"x"`
		B int `dativo:"x"`
	}
	type pointerToNull struct{ N *sql.NullInt64 }
	for name, err := range map[string]error{
		"a slice":          second(SchemaOf[nested]()),
		"two columns x":    second(SchemaOf[twice]()),
		"not a struct":     second(SchemaOf[int]()),
		"no fields":        second(SchemaOf[struct{ hidden int }]()),
		"pointer to null":  second(SchemaOf[pointerToNull]()),
		"map[string]int":   second(SchemaOf[struct{ M map[string]int }]()),
		"no exported type": second(SchemaOf[struct{ C chan int }]()),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := SchemaOf[nested](); err == nil || !strings.Contains(err.Error(), "field dativo.nested.Tags: Go type []string has no Arrow column type") {
		t.Errorf("the error names the field and type: %v", err)
	}
}

func second[A any](_ A, err error) error { return err }

func TestRowWriterBuildsBatchesEveryNRows(t *testing.T) {
	var batches []arrow.RecordBatch
	emit := func(batch arrow.RecordBatch) error { batches = append(batches, batch); return nil }
	w, err := NewRowWriter[order](emit, BatchRows(2))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	note := "fragile"
	placed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))
	rows := []order{
		{ID: 1, Customer: "ann", Amount: 1.5, Paid: true, Placed: placed, Note: &note, Items: 3, Code: 7,
			Blob: []byte{1, 2}, Coupon: sql.NullString{String: "X1", Valid: true}, Discount: sql.Null[float32]{V: 0.5, Valid: true},
			Audit: Audit{CreatedBy: "sys"}},
		{ID: 2, Customer: "bob"},
		{ID: 3, Customer: "cy", Blob: []byte{}},
	}
	for _, row := range rows {
		if err := w.Append(row); err != nil {
			t.Fatal(err)
		}
	}
	if len(batches) != 1 {
		t.Fatalf("%d batches before Flush, want 1", len(batches))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil || len(batches) != 2 { // nothing left: no empty batch
		t.Fatalf("%d batches after Flush: %v", len(batches), err)
	}
	first, last := batches[0], batches[1]
	defer first.Release()
	defer last.Release()
	if first.NumRows() != 2 || last.NumRows() != 1 || !first.Schema().Equal(w.Schema()) {
		t.Fatalf("rows %d and %d", first.NumRows(), last.NumRows())
	}
	col := func(name string) arrow.Array { return first.Column(first.Schema().FieldIndices(name)[0]) }
	if got := col("placed").(*array.Timestamp).Value(0); int64(got) != placed.UnixMicro() {
		t.Errorf("placed %d, want %d (microseconds since the epoch, UTC)", got, placed.UnixMicro())
	}
	if v := col("note").(*array.String); v.Value(0) != "fragile" || !v.IsNull(1) {
		t.Errorf("note %v", v)
	}
	if v := col("Coupon").(*array.String); v.Value(0) != "X1" || !v.IsNull(1) {
		t.Errorf("coupon %v", v)
	}
	if v := col("discount").(*array.Float32); v.Value(0) != 0.5 || !v.IsNull(1) {
		t.Errorf("discount %v", v)
	}
	if v := col("blob").(*array.Binary); string(v.Value(0)) != "\x01\x02" || !v.IsNull(1) {
		t.Errorf("blob %v", v) // nil in a nullable []byte column is null ...
	}
	if v := last.Column(last.Schema().FieldIndices("blob")[0]).(*array.Binary); v.IsNull(0) || len(v.Value(0)) != 0 {
		t.Errorf("an empty []byte is an empty value, not null: %v", v) // ... an empty one is not
	}
	if v := col("Amount").(*array.Float64); v.NullN() != 0 || v.Value(1) != 0 {
		t.Errorf("a nullable non-pointer column holds its values: %v", v)
	}
	if v := col("created_by").(*array.String); v.Value(0) != "sys" {
		t.Errorf("embedded %v", v)
	}
}

func TestRowWriterBatchesByBytes(t *testing.T) {
	type line struct {
		Text string `json:"text"`
	}
	var sizes []int64
	emit := func(batch arrow.RecordBatch) error {
		sizes = append(sizes, batch.NumRows())
		batch.Release()
		return nil
	}
	w, _ := NewRowWriter[line](emit, BatchBytes(1000))
	defer w.Release()
	for i := 0; i < 25; i++ {
		if err := w.Append(line{Text: strings.Repeat("x", 96)}); err != nil { // 100 bytes a row
			t.Fatal(err)
		}
	}
	_ = w.Flush()
	if len(sizes) != 3 || sizes[0] != 10 || sizes[1] != 10 || sizes[2] != 5 {
		t.Fatalf("batches of %v rows, want [10 10 5]", sizes)
	}
}

func TestRowWriterReturnsEmitsError(t *testing.T) {
	gone := errors.New("the host went away")
	w, _ := NewRowWriter[struct{ N int }](func(batch arrow.RecordBatch) error { batch.Release(); return gone }, BatchRows(1))
	defer w.Release()
	if err := w.Append(struct{ N int }{1}); !errors.Is(err, gone) {
		t.Fatalf("Append: %v", err)
	}
}

func TestRowWriterReleasesEverything(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	emit := func(batch arrow.RecordBatch) error { batch.Release(); return nil }
	w, _ := NewRowWriter[order](emit, BatchRows(2), WithAllocator(mem))
	for i := 0; i < 5; i++ {
		_ = w.Append(order{ID: int64(i), Customer: "x"})
	}
	w.Release() // one row never flushed
	w.Release()
}

// rowsPlugin reads its rows from a Go slice through StreamRows and takes its options from a struct.
type rowsPlugin struct {
	BaseReader
	opts sequenceOptions
}

type sequenceOptions struct {
	Rows      int64  `json:"rows" doc:"How many rows."`
	BatchSize int    `json:"batch_size,omitempty" minimum:"1"`
	Label     string `json:"label,omitempty" enum:"a,b"`
}

var sequenceOptionsOf = NewOptions(sequenceOptions{BatchSize: 4, Label: "a"})

type sequenceRow struct {
	N     int64   `json:"n"`
	Label *string `json:"label"`
}

func (p *rowsPlugin) Info() Info {
	return Info{Name: "rows", Version: "1.0.0", ConfigSchema: sequenceOptionsOf.Schema()}
}

func (p *rowsPlugin) Configure(_ context.Context, cfg Config) (err error) {
	p.opts, err = sequenceOptionsOf.Decode(cfg)
	return err
}

func (p *rowsPlugin) Discover(context.Context) ([]Dataset, error) {
	return []Dataset{{Name: "numbers", Schema: MustSchemaOf[sequenceRow]()}}, nil
}

func (p *rowsPlugin) Read(ctx context.Context, _ Split) (array.RecordReader, error) {
	return StreamRows(ctx, func(ctx context.Context, rows *RowWriter[sequenceRow]) error {
		for n := int64(1); n <= p.opts.Rows; n++ {
			row := sequenceRow{N: n}
			if n%2 == 0 {
				row.Label = &p.opts.Label
			}
			if err := rows.Append(row); err != nil {
				return err
			}
		}
		return nil
	}, BatchRows(p.opts.BatchSize))
}

func TestStreamRowsAndOptionsThroughFlight(t *testing.T) {
	h := start(t, &rowsPlugin{})
	var spec map[string]any
	if e := h.action("spec", struct{}{}, &spec); e != nil {
		t.Fatal(e)
	}
	schema, _ := json.Marshal(spec["config_schema"])
	if !strings.Contains(string(schema), `"required":["rows"]`) || !strings.Contains(string(schema), `"additionalProperties":false`) {
		t.Fatalf("config_schema %s", schema)
	}
	if e := h.configure(RoleReader, `{"rows": 10, "batch_size": 0}`); e == nil || e.Kind != KindConfig ||
		e.Message != "reader.options.batch_size must be at least 1 (got 0)" {
		t.Fatalf("a bad option: %+v", e)
	}
	if e := h.configure(RoleReader, `{"rows": 10}`); e != nil {
		t.Fatal(e)
	}
	reader := h.read(t, Split{Dataset: "numbers", ID: "0"})
	defer reader.Release()
	var batches, nulls, sum int64
	for reader.Next() {
		batch := reader.RecordBatch()
		batches++
		nulls += int64(batch.Column(1).NullN())
		for _, n := range batch.Column(0).(*array.Int64).Int64Values() {
			sum += n
		}
	}
	if reader.Err() != nil || batches != 3 || sum != 55 || nulls != 5 || !reader.Schema().Equal(MustSchemaOf[sequenceRow]()) {
		t.Fatalf("%d batches, sum %d, %d nulls, schema %s: %v", batches, sum, nulls, reader.Schema(), reader.Err())
	}
}
