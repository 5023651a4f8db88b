package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	dativo "github.com/dativo-io/dativo/sdk/go"
)

const (
	version = "0.1.0"
	// marker is the record of a committed run, inside its folder.
	marker = "_dativo_commit.json"
)

// runFolder matches a committed run's folder: <seq>-<run id>.
var (
	runFolder = regexp.MustCompile(`^(\d{6,})-([0-9A-Za-z_\-]+)$`)
	runID     = regexp.MustCompile(`^[0-9A-Za-z_\-]+$`)
)

// settings are the keys of the job's target section, those of the built-in parquet writer.
type settings struct {
	Path             string          `json:"path"`
	S3               json.RawMessage `json:"s3"`
	Compression      string          `json:"compression"`
	CompressionLevel *int            `json:"compression_level"`
	TargetFileSizeMB int64           `json:"target_file_size_mb"`
	RowGroupRows     int64           `json:"row_group_rows"`
}

var codecs = map[string]compress.Compression{
	"zstd": compress.Codecs.Zstd, "snappy": compress.Codecs.Snappy, "gzip": compress.Codecs.Gzip,
	"lz4": compress.Codecs.Lz4Raw, "brotli": compress.Codecs.Brotli, "none": compress.Codecs.Uncompressed,
}

// record is what one commit says, the built-in writer's Record.
type record struct {
	Format      int             `json:"format"`
	Job         string          `json:"job"`
	RunID       string          `json:"run_id"`
	Seq         int             `json:"seq"`
	Folder      string          `json:"folder"`
	Mode        string          `json:"mode"`
	Rows        int64           `json:"rows"`
	Files       []string        `json:"files"`
	Schema      string          `json:"schema"`
	State       json.RawMessage `json:"state"`
	CommittedAt float64         `json:"committed_at"`
	Writer      string          `json:"writer"`
}

type writer struct {
	dativo.BasePlugin
	mu       sync.Mutex
	settings settings
	codec    compress.Compression
	run      dativo.Context
	schemas  map[string]*arrow.Schema
}

func (w *writer) Info() dativo.Info {
	return dativo.Info{
		Name:    "go_parquet",
		Version: version,
		ConfigSchema: map[string]any{
			"type": "object", "additionalProperties": false,
			"description": "go_parquet takes no options of its own: it reads the parquet connector's keys " +
				"(path, compression, compression_level, target_file_size_mb, row_group_rows) from the target section.",
		},
	}
}

func (w *writer) Configure(_ context.Context, cfg dativo.Config) error {
	s := settings{Compression: "zstd", TargetFileSizeMB: 256, RowGroupRows: 1 << 20}
	if err := cfg.DecodeSettings(&s); err != nil {
		return err
	}
	var none struct{}
	if err := cfg.DecodeOptions(&none); err != nil {
		return err
	}
	s.Path = strings.TrimPrefix(s.Path, "file://")
	switch {
	case s.Path == "":
		return dativo.ConfigError("target.path is required", "Name the dataset's folder, e.g. path: out/{dataset}.")
	case strings.Contains(s.Path, "://"):
		return dativo.PluginFailed(fmt.Sprintf("target.path %q: go_parquet writes local folders only", s.Path),
			"Use the built-in parquet writer (writer.type: default, or fallback: default) for s3:// targets.")
	case len(s.S3) > 0 && string(s.S3) != "null":
		return dativo.PluginFailed("target.s3: go_parquet writes local folders only", "Remove s3, or use the built-in parquet writer.")
	case s.TargetFileSizeMB < 1 || s.RowGroupRows < 1024:
		return dativo.ConfigError("target.target_file_size_mb must be >= 1 and row_group_rows >= 1024", "")
	}
	codec, ok := codecs[strings.ToLower(s.Compression)]
	if !ok {
		return dativo.ConfigError(fmt.Sprintf("target.compression %q is not one of zstd, snappy, gzip, lz4, brotli, none", s.Compression), "")
	}
	if !runID.MatchString(cfg.Context.RunID) {
		return dativo.PluginFailed(fmt.Sprintf("run id %q: go_parquet needs letters, digits, '_' and '-' only", cfg.Context.RunID), "")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.settings, w.codec, w.run, w.schemas = s, codec, cfg.Context, map[string]*arrow.Schema{}
	return nil
}

// dir is the folder of one dataset ({dataset} in path replaced by its name).
func (w *writer) dir(dataset string) (string, error) {
	w.mu.Lock()
	path := w.settings.Path
	w.mu.Unlock()
	if strings.HasPrefix(path, "~/") {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, path[2:])
	}
	return filepath.Abs(strings.ReplaceAll(path, "{dataset}", dataset))
}

func (w *writer) staging(dir string) string {
	return filepath.Join(dir, "_dativo", "staging", w.run.RunID)
}

// Check requires the nearest existing folder of the target path to be writable.
func (w *writer) Check(context.Context) error {
	probe, err := w.dir("dataset")
	if err != nil {
		return dativo.ConfigError("target.path: "+err.Error(), "")
	}
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		probe = filepath.Dir(probe)
	}
	if syscall.Access(probe, 2 /* W_OK */) != nil {
		return dativo.ConnectionFailed(fmt.Sprintf("target.path %q: folder %s is not writable", w.settings.Path, probe),
			"Choose a writable target.path or fix the folder's permissions.")
	}
	return nil
}

// records lists the committed runs of dir, newest first.
func records(dir string) ([]record, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []record
	for _, e := range entries {
		m := runFolder.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name(), marker))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name(), marker), err)
		}
		r.Seq, _ = strconv.Atoi(m[1])
		r.Folder = e.Name()
		if r.RunID == "" {
			r.RunID = m[2]
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq > out[j].Seq })
	return out, nil
}

func storageError(err error, doing string) error {
	return dativo.ConnectionFailed(fmt.Sprintf("cannot %s: %v", doing, err), "Check the target folder and its permissions.")
}

// State returns the state of the newest committed run of this job.
func (w *writer) State(_ context.Context, dataset dativo.Dataset) (dativo.State, error) {
	dir, err := w.dir(dataset.Name)
	if err != nil {
		return nil, err
	}
	runs, err := records(dir)
	if err != nil {
		return nil, storageError(err, "read the commits")
	}
	for _, r := range runs {
		if r.Job == w.run.Job {
			return r.State, nil
		}
	}
	return nil, nil
}

// Prepare creates the folder and, since runs only append, requires the schema of the files already there.
func (w *writer) Prepare(_ context.Context, dataset dativo.Dataset, schema *arrow.Schema, mode dativo.Mode) error {
	if mode != dativo.ModeAppend {
		return dativo.PluginFailed(fmt.Sprintf("target.mode %s is not supported by go_parquet, which appends only", mode),
			"Use mode: append, or the built-in parquet writer (fallback: default) for overwrite.")
	}
	for _, field := range schema.Fields() {
		one := arrow.NewSchema([]arrow.Field{field}, nil)
		if _, err := pqarrow.ToParquet(one, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps()); err != nil {
			return dativo.PluginFailed(fmt.Sprintf("column %s of %s has type %s, which go_parquet cannot write: %v",
				field.Name, dataset.Name, field.Type, err), "Cast the column in the source, or use another writer.")
		}
	}
	w.mu.Lock()
	w.schemas[dataset.Name] = schema
	several := len(w.schemas) > 1 && !strings.Contains(w.settings.Path, "{dataset}")
	w.mu.Unlock()
	if several {
		return dativo.ConfigError("the source produces several datasets but target.path has no {dataset} placeholder",
			"Write e.g. path: out/{dataset}.")
	}
	dir, err := w.dir(dataset.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return dativo.ConnectionFailed(fmt.Sprintf("cannot create target folder %s: %v", dir, err), "Choose a writable target.path.")
	}
	runs, err := records(dir)
	if err != nil {
		return storageError(err, "read the commits")
	}
	for _, r := range runs {
		if len(r.Files) == 0 || r.Schema == "" {
			continue // a run without files constrains nothing
		}
		existing, err := dativo.DecodeSchema(r.Schema)
		if err != nil {
			return storageError(err, "read the schema of "+r.Folder)
		}
		if difference := schemaDifference(existing, schema); difference != "" {
			return dativo.SchemaMismatch(fmt.Sprintf("target %s holds data with another schema: %s", dir, difference),
				"Write to another folder, or use an iceberg target, which evolves schemas.")
		}
		break
	}
	return nil
}

// schemaDifference names the first difference of columns, types or nullability ("" if none).
func schemaDifference(old, new *arrow.Schema) string {
	if old.NumFields() != new.NumFields() {
		return fmt.Sprintf("%d columns there, %d now", old.NumFields(), new.NumFields())
	}
	for i, a := range old.Fields() {
		b := new.Field(i)
		switch {
		case a.Name != b.Name:
			return fmt.Sprintf("column %d is %s there, %s now", i, a.Name, b.Name)
		case !arrow.TypeEqual(a.Type, b.Type):
			return fmt.Sprintf("column %s is %s there, %s now", a.Name, a.Type, b.Type)
		case a.Nullable != b.Nullable:
			return fmt.Sprintf("column %s is nullable=%v there, %v now", a.Name, a.Nullable, b.Nullable)
		}
	}
	return ""
}

// Write streams the split's batches into staged Parquet files, rolling over at target_file_size_mb.
func (w *writer) Write(_ context.Context, split dativo.Split, records array.RecordReader) (dativo.Written, error) {
	result := dativo.Written{Dataset: split.Dataset, Split: split.ID, Files: []string{}}
	dir, err := w.dir(split.Dataset)
	if err != nil {
		return result, err
	}
	w.mu.Lock()
	prepared := w.schemas[split.Dataset]
	s, codec := w.settings, w.codec
	w.mu.Unlock()
	schema := records.Schema()
	if prepared != nil {
		if difference := schemaDifference(prepared, schema); difference != "" {
			return result, dativo.SchemaMismatch("split "+split.ID+" of "+split.Dataset+" does not have the prepared schema: "+difference, "")
		}
	}
	staging := w.staging(dir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return result, storageError(err, "create the staging folder")
	}
	props := []parquet.WriterProperty{parquet.WithCompression(codec), parquet.WithMaxRowGroupLength(s.RowGroupRows)}
	if s.CompressionLevel != nil {
		props = append(props, parquet.WithCompressionLevel(*s.CompressionLevel))
	}
	var (
		file *os.File
		fw   *pqarrow.FileWriter
	)
	closeFile := func() error {
		if fw == nil {
			return nil
		}
		err := fw.Close() // also closes the file
		if info, statErr := os.Stat(file.Name()); statErr == nil {
			result.Bytes += info.Size()
		}
		fw, file = nil, nil
		return err
	}
	defer closeFile() // on failure: finish the file anyway; abort deletes the staging folder
	limit := s.TargetFileSizeMB << 20
	for records.Next() {
		batch := records.RecordBatch()
		if batch.NumRows() == 0 {
			continue
		}
		if fw == nil {
			name := filepath.Join(staging, fmt.Sprintf("part-%s-%05d.parquet", split.ID, len(result.Files)))
			if file, err = os.Create(name); err != nil {
				return result, storageError(err, "create a data file")
			}
			fw, err = pqarrow.NewFileWriter(schema, file, parquet.NewWriterProperties(props...),
				pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
			if err != nil {
				file.Close()
				fw = nil
				return result, dativo.PluginFailed("cannot write Parquet for "+split.Dataset+": "+err.Error(), "")
			}
			result.Files = append(result.Files, name)
		}
		if err := fw.WriteBuffered(batch); err != nil {
			return result, dativo.PluginFailed("writing Parquet for "+split.Dataset+" failed: "+err.Error(), "")
		}
		result.Rows += batch.NumRows()
		if fw.TotalBytesWritten() >= limit {
			if err := closeFile(); err != nil {
				return result, storageError(err, "finish a data file")
			}
		}
	}
	if err := records.Err(); err != nil {
		return result, err
	}
	if err := closeFile(); err != nil {
		return result, storageError(err, "finish a data file")
	}
	return result, nil
}

// Commit publishes the staged files as one run folder: the record is written into the staging folder,
// which is then renamed into place. A run id already committed is a no-op.
func (w *writer) Commit(_ context.Context, c dativo.Commit) (dativo.CommitInfo, error) {
	dir, err := w.dir(c.Dataset.Name)
	if err != nil {
		return dativo.CommitInfo{}, err
	}
	runs, err := records(dir)
	if err != nil {
		return dativo.CommitInfo{}, dativo.CommitFailed("cannot read the commits: "+err.Error(), "Nothing was published; rerun the job.")
	}
	for _, r := range runs {
		if r.RunID == c.RunID {
			return dativo.CommitInfo{CommitID: r.Folder, NoOp: true}, nil
		}
	}
	seq := 1
	if len(runs) > 0 {
		seq = runs[0].Seq + 1
	}
	staging := w.staging(dir)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return dativo.CommitInfo{}, dativo.CommitFailed("cannot create the staging folder: "+err.Error(), "Nothing was published.")
	}
	listed := map[string]bool{}
	var rows int64
	for _, written := range c.Files {
		rows += written.Rows
		for _, f := range written.Files {
			if filepath.Dir(f) != staging {
				return dativo.CommitInfo{}, dativo.CommitFailed(fmt.Sprintf("file %s is not staged for run %s", f, w.run.RunID), "Nothing was published.")
			}
			if _, err := os.Stat(f); err != nil {
				return dativo.CommitInfo{}, dativo.CommitFailed("a written file is missing: "+err.Error(), "Nothing was published; rerun the job.")
			}
			listed[filepath.Base(f)] = true
		}
	}
	entries, err := os.ReadDir(staging)
	if err != nil {
		return dativo.CommitInfo{}, dativo.CommitFailed("cannot list the staging folder: "+err.Error(), "Nothing was published.")
	}
	for _, e := range entries { // files of failed attempts must not be published with this run
		if !listed[e.Name()] {
			_ = os.RemoveAll(filepath.Join(staging, e.Name()))
		}
	}
	files := make([]string, 0, len(listed))
	for name := range listed {
		files = append(files, name)
	}
	sort.Strings(files)
	w.mu.Lock()
	schema := w.schemas[c.Dataset.Name]
	w.mu.Unlock()
	if schema == nil {
		schema = c.Dataset.Schema
	}
	rec := record{
		Format: 1, Job: w.run.Job, RunID: c.RunID, Seq: seq, Folder: fmt.Sprintf("%06d-%s", seq, c.RunID),
		Mode: string(dativo.ModeAppend), Rows: rows, Files: files, State: c.State,
		CommittedAt: float64(time.Now().UnixNano()) / 1e9, Writer: "go_parquet " + version,
	}
	if len(rec.State) == 0 {
		rec.State = json.RawMessage("null")
	}
	if schema != nil {
		rec.Schema = dativo.EncodeSchema(schema)
	}
	if err := writeSynced(filepath.Join(staging, marker), rec); err != nil {
		return dativo.CommitInfo{}, dativo.CommitFailed("cannot write the commit record: "+err.Error(), "Nothing was published.")
	}
	// The commit point: one rename. It fails if another run took this folder name meanwhile.
	if err := os.Rename(staging, filepath.Join(dir, rec.Folder)); err != nil {
		return dativo.CommitInfo{}, dativo.CommitFailed("could not publish into "+dir+": "+err.Error(), "Nothing was published; rerun the job.")
	}
	if err := syncDir(dir); err != nil {
		return dativo.CommitInfo{}, dativo.CommitStateUnknown("the run folder was renamed but not synced: "+err.Error(),
			"Rerun with the same --run-id: a committed run is a no-op.")
	}
	return dativo.CommitInfo{CommitID: rec.Folder, Rows: rows}, nil
}

// Abort deletes the files of this run that were written but will not be committed.
func (w *writer) Abort(_ context.Context, files []dativo.Written) error {
	datasets := map[string]bool{}
	for _, written := range files {
		datasets[written.Dataset] = true
		for _, f := range written.Files {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				dativo.Logf("go_parquet: cannot delete %s: %v", f, err)
			}
		}
	}
	for dataset := range datasets {
		if dir, err := w.dir(dataset); err == nil {
			_ = os.RemoveAll(w.staging(dir))
		}
	}
	return nil
}

func writeSynced(path string, value any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
