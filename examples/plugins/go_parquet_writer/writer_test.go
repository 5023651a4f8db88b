package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	dativo "github.com/dativo-io/dativo/sdk/go"
)

var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

func configured(t *testing.T, dir, runID string, extra map[string]any) *writer {
	t.Helper()
	settings := map[string]any{"path": filepath.Join(dir, "{dataset}")}
	for k, v := range extra {
		settings[k] = v
	}
	raw, _ := json.Marshal(settings)
	w := &writer{}
	err := w.Configure(context.Background(), dativo.Config{
		Role: dativo.RoleWriter, Settings: raw, Options: json.RawMessage("{}"),
		Context: dativo.Context{Job: "j", RunID: runID},
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func batches(n int) array.RecordReader {
	ids := array.NewInt64Builder(memory.DefaultAllocator)
	names := array.NewStringBuilder(memory.DefaultAllocator)
	for i := 0; i < n; i++ {
		ids.Append(int64(i))
		names.Append("x")
	}
	a, b := ids.NewArray(), names.NewArray()
	defer a.Release()
	defer b.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{a, b}, int64(n))
	defer rec.Release()
	reader, _ := array.NewRecordReader(schema, []arrow.RecordBatch{rec, rec})
	return reader
}

func run(t *testing.T, dir, runID string) (dativo.CommitInfo, []dativo.Written) {
	t.Helper()
	ctx := context.Background()
	w := configured(t, dir, runID, nil)
	ds := dativo.Dataset{Name: "public.t", Schema: schema}
	if err := w.Prepare(ctx, ds, schema, dativo.ModeAppend); err != nil {
		t.Fatal(err)
	}
	var written []dativo.Written
	for _, id := range []string{"0", "1"} {
		out, err := w.Write(ctx, dativo.Split{Dataset: ds.Name, ID: id}, batches(10))
		if err != nil {
			t.Fatal(err)
		}
		written = append(written, out)
	}
	info, err := w.Commit(ctx, dativo.Commit{Dataset: ds, Files: written, State: json.RawMessage(`{"n": 1}`), RunID: runID})
	if err != nil {
		t.Fatal(err)
	}
	return info, written
}

func TestCommitPublishesOneFolderAndIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	info, written := run(t, dir, "r1")
	if info.CommitID != "000001-r1" || info.Rows != 40 || info.NoOp || written[0].Rows != 20 || written[0].Bytes == 0 {
		t.Fatalf("commit %+v, written %+v", info, written)
	}
	folder := filepath.Join(dir, "public.t", "000001-r1")
	f, err := file.OpenParquetFile(filepath.Join(folder, "part-0-00000.parquet"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk, err := f.MetaData().RowGroup(0).ColumnChunk(0)
	if err != nil || f.NumRows() != 20 || chunk.Compression().String() != "ZSTD" {
		t.Fatalf("rows %d, codec %v: %v", f.NumRows(), chunk, err)
	}
	fr, err := pqarrow.NewFileReader(f, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := fr.Schema()
	if difference := schemaDifference(schema, stored); difference != "" {
		t.Fatalf("schema: %s", difference)
	}

	again, written := run(t, dir, "r1")
	if !again.NoOp || again.CommitID != "000001-r1" {
		t.Fatalf("rerun %+v", again)
	}
	w := configured(t, dir, "r1", nil)
	if err := w.Abort(context.Background(), written); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "public.t", "_dativo", "staging", "r1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("staging left after abort: %v", err)
	}
	next, _ := run(t, dir, "r2")
	if next.CommitID != "000002-r2" {
		t.Fatalf("second run %+v", next)
	}
	state, err := w.State(context.Background(), dativo.Dataset{Name: "public.t"})
	if err != nil || string(state) != `{"n":1}` {
		t.Fatalf("state %s %v", state, err)
	}
}

func TestLimitsArePluginFailures(t *testing.T) {
	dir := t.TempDir()
	w := configured(t, dir, "r1", nil)
	ctx := context.Background()
	var typed *dativo.Error
	err := w.Prepare(ctx, dativo.Dataset{Name: "t"}, schema, dativo.ModeOverwrite)
	if !errors.As(err, &typed) || typed.Kind != dativo.KindPluginFailed {
		t.Fatalf("overwrite: %v", err)
	}
	interval := arrow.NewSchema([]arrow.Field{{Name: "iv", Type: arrow.FixedWidthTypes.MonthDayNanoInterval}}, nil)
	err = w.Prepare(ctx, dativo.Dataset{Name: "t"}, interval, dativo.ModeAppend)
	if !errors.As(err, &typed) || typed.Kind != dativo.KindPluginFailed {
		t.Fatalf("interval: %v", err)
	}
	raw, _ := json.Marshal(map[string]any{"path": dir, "compresion": "zstd"})
	err = (&writer{}).Configure(ctx, dativo.Config{Role: dativo.RoleWriter, Settings: raw, Context: dativo.Context{RunID: "r"}})
	if !errors.As(err, &typed) || typed.Kind != dativo.KindConfig {
		t.Fatalf("unknown key: %v", err)
	}
}
