package dativo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// ProtocolVersion is the version of docs/plugins/protocol.md this SDK speaks.
const ProtocolVersion = 1

// Info describes a plugin: the handshake line and the answer to the spec action.
type Info struct {
	// Name is the plugin's name, shown in reports and messages (e.g. "go_postgres").
	Name string
	// Version is the plugin's own version (semver).
	Version string
	// APIVersion is the PEP 440 range of the Dativo plugin API the plugin supports; default ">=1,<2".
	APIVersion string
	// ConfigSchema is the JSON Schema of the plugin's options; default: an object with any keys.
	ConfigSchema map[string]any
}

// Plugin is what every plugin implements; a plugin also implements [Reader], [Writer] or both.
type Plugin interface {
	// Info returns the plugin's name, version and option schema. It is called before Configure.
	Info() Info
	// Configure validates and keeps the job's settings; the host calls it first, once per role.
	// Return a [ConfigError] naming the bad key.
	Configure(ctx context.Context, cfg Config) error
	// Check verifies that the source or target is reachable ([ConnectionFailed] otherwise).
	Check(ctx context.Context) error
	// Close releases connections and files; called once at the end of a run, whatever happened.
	Close() error
}

// Reader is a plugin that produces Arrow record batches.
type Reader interface {
	Plugin
	// Discover lists the datasets the reader can produce, with schemas where known.
	Discover(ctx context.Context) ([]Dataset, error)
	// Plan divides one dataset into independent splits; state is the one committed by the previous
	// run (nil on the first run).
	Plan(ctx context.Context, dataset Dataset, state State) ([]Split, error)
	// Read streams one split. The SDK releases the reader when the stream ends; an error from its Err
	// method fails the read. ctx is cancelled when the host abandons the stream.
	Read(ctx context.Context, split Split) (array.RecordReader, error)
}

// Writer is a plugin that writes splits in parallel, then publishes them in one atomic commit.
type Writer interface {
	Plugin
	// State returns the incremental state of the last commit to dataset's target (nil if none).
	State(ctx context.Context, dataset Dataset) (State, error)
	// Prepare creates or checks the target before any split is written.
	Prepare(ctx context.Context, dataset Dataset, schema *arrow.Schema, mode Mode) error
	// Write writes one split's batches to files nobody can see yet and says what it wrote.
	Write(ctx context.Context, split Split, records array.RecordReader) (Written, error)
	// Commit publishes the files and the state together, atomically; a run id already committed is
	// a no-op (CommitInfo.NoOp).
	Commit(ctx context.Context, commit Commit) (CommitInfo, error)
	// Abort discards files written by Write that will never be committed.
	Abort(ctx context.Context, files []Written) error
}

// Role is the side a plugin plays in a job.
type Role string

// The two roles.
const (
	RoleReader Role = "reader"
	RoleWriter Role = "writer"
)

// Mode is how a writer publishes a run.
type Mode string

// The modes of a job's target.mode.
const (
	ModeAppend    Mode = "append"
	ModeOverwrite Mode = "overwrite"
	ModeMerge     Mode = "merge"
)

// State is a dataset's incremental state: any JSON value, committed together with the data.
// nil (or the JSON null) means none.
type State = json.RawMessage

// Config is the body of the configure action.
type Config struct {
	// Role is the role the plugin is configured for.
	Role Role `json:"role"`
	// Options is the job's reader.options or writer.options block (a JSON object).
	Options json.RawMessage `json:"options"`
	// Settings is the job's source or target section without the engine's own keys: the connector
	// keys (connection, tables, path …).
	Settings json.RawMessage `json:"settings"`
	// Context says which job and run the plugin serves.
	Context Context `json:"context"`
	// Counters is where the plugin counts for this role (Counters.Add); the SDK sends them to the host when
	// the role is closed.
	Counters *Counters `json:"-"`
}

// Context is what the host tells a plugin about the run.
type Context struct {
	// Job is the job's name.
	Job string `json:"job"`
	// RunID identifies the run; commits carry it so that a rerun of a committed run is a no-op.
	RunID string `json:"run_id"`
	// Plugin is how the job named this implementation (for messages).
	Plugin string `json:"plugin"`
	// Parallelism is how many splits the host runs at once; a reader may plan that many.
	Parallelism int `json:"parallelism"`
	// Cursor is the incremental cursor column; empty for a full read.
	Cursor string `json:"cursor"`
	// WorkDir is a folder the plugin may use for scratch files.
	WorkDir string `json:"work_dir"`
	// MemoryBytes is the job's memory budget for buffers, across all splits (its memory_mb). The SDK makes
	// half of it the Go runtime's soft memory limit unless GOMEMLIMIT is set; 0 from a host that does not send it.
	MemoryBytes int64 `json:"memory_bytes"`
	// BatchBytes is the record batch size a reader should build within that budget (0: not sent); an
	// option the job sets explicitly wins.
	BatchBytes int `json:"batch_bytes"`
}

// DecodeOptions decodes Options strictly into v (a pointer to a struct): an unknown key or a value of
// the wrong type is a [ConfigError] that names it.
func (c Config) DecodeOptions(v any) error {
	return decodeStrict(c.Options, v, string(c.Role)+".options")
}

// DecodeSettings decodes Settings strictly into v, like [Config.DecodeOptions].
func (c Config) DecodeSettings(v any) error {
	section := "source"
	if c.Role == RoleWriter {
		section = "target"
	}
	return decodeStrict(c.Settings, v, section)
}

// Dataset is one table, file set or stream a reader produces.
type Dataset struct {
	// Name is stable, e.g. "public.orders".
	Name string
	// Schema is the schema of every batch; nil means "the first batch decides".
	Schema *arrow.Schema
	// PrimaryKey lists the columns that identify a row.
	PrimaryKey []string
	// CursorCandidates lists the columns usable as an incremental cursor.
	CursorCandidates []string
}

type datasetJSON struct {
	Name             string   `json:"name"`
	Schema           *string  `json:"schema"`
	PrimaryKey       []string `json:"primary_key"`
	CursorCandidates []string `json:"cursor_candidates"`
}

// MarshalJSON encodes the dataset as protocol.md says (schema as base64 of the IPC schema message).
func (d Dataset) MarshalJSON() ([]byte, error) {
	out := datasetJSON{Name: d.Name, PrimaryKey: nonNil(d.PrimaryKey), CursorCandidates: nonNil(d.CursorCandidates)}
	if d.Schema != nil {
		text := EncodeSchema(d.Schema)
		out.Schema = &text
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes a dataset sent by the host.
func (d *Dataset) UnmarshalJSON(data []byte) error {
	var in datasetJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*d = Dataset{Name: in.Name, PrimaryKey: in.PrimaryKey, CursorCandidates: in.CursorCandidates}
	if in.Schema != nil {
		schema, err := DecodeSchema(*in.Schema)
		if err != nil {
			return fmt.Errorf("dataset %s: %w", in.Name, err)
		}
		d.Schema = schema
	}
	return nil
}

// Split is one independent unit of reading: Plan makes it, Read (in any process) receives it back.
type Split struct {
	// Dataset is the name of the dataset the split belongs to.
	Dataset string `json:"dataset"`
	// ID is unique among the dataset's splits ("0", "1" …).
	ID string `json:"id"`
	// Params is everything Read needs, as a JSON object (nil is sent as {}).
	Params json.RawMessage `json:"params"`
}

// Written is what Write produced for one split: files written but not yet visible.
type Written struct {
	Dataset string   `json:"dataset"`
	Split   string   `json:"split"`
	Files   []string `json:"files"`
	Rows    int64    `json:"rows"`
	Bytes   int64    `json:"bytes"`
	// Extra holds writer-private details the commit needs.
	Extra map[string]any `json:"extra"`
}

// Commit is the body of the commit action.
type Commit struct {
	Dataset Dataset   `json:"dataset"`
	Files   []Written `json:"files"`
	State   State     `json:"state"`
	RunID   string    `json:"run_id"`
}

// CommitInfo is the result of one commit.
type CommitInfo struct {
	// CommitID is the target's id of what was published (empty: none).
	CommitID string
	// Rows is the number of rows published.
	Rows int64
	// NoOp is true when the run id had been committed already and nothing was done.
	NoOp bool
}

// MarshalJSON encodes the commit result; an empty CommitID is null.
func (c CommitInfo) MarshalJSON() ([]byte, error) {
	var id *string
	if c.CommitID != "" {
		id = &c.CommitID
	}
	return json.Marshal(struct {
		CommitID *string `json:"commit_id"`
		Rows     int64   `json:"rows"`
		NoOp     bool    `json:"no_op"`
	}{id, c.Rows, c.NoOp})
}

func nonNil(values []string) []string {
	if values == nil {
		return []string{}
	}
	return values
}
