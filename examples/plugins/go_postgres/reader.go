package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	dativo "github.com/dativo-io/dativo/sdk/go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// version is the plugin's own version, reported in the handshake and in run reports.
const version = "0.1.0"

// reader reads PostgreSQL tables like the built-in postgres reader: one coordinator connection holds
// a REPEATABLE READ READ ONLY transaction from the first discover/plan until Close and exports its
// snapshot; every split opens its own connection and adopts that snapshot, so all splits read one
// consistent state of the database.
type reader struct {
	mu          sync.Mutex // guards everything below; the host may call actions concurrently
	settings    settings
	policy      numericPolicy
	run         dativo.Context
	pg          *pgx.ConnConfig
	coordinator *pgx.Conn
	snapshot    string
	relations   map[string]*relation
	reads       map[int]context.CancelFunc // reads in flight, cancelled by Close
	nextRead    int
}

// splitParams is what a split carries from plan to read: the same keys as the built-in's.
type splitParams struct {
	Dataset  string `json:"dataset"`
	Snapshot string `json:"snapshot"`
	Schema   string `json:"schema"`
	SQL      string `json:"sql"`
}

func (r *reader) Info() dativo.Info {
	return dativo.Info{
		Name:    "go_postgres",
		Version: version,
		ConfigSchema: map[string]any{
			"type":                 "object",
			"additionalProperties": false,
			"description": "go_postgres takes no options of its own: it reads the postgres connector's keys " +
				"(connection.dsn, tables or query, numeric, batch_size_bytes, connect_timeout) from the source section.",
		},
	}
}

func (r *reader) Configure(_ context.Context, cfg dativo.Config) error {
	s, policy, err := parseSettings(cfg)
	if err != nil {
		return err
	}
	pg, err := parseDSN(s.Connection.DSN, s.ConnectTimeout)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	r.settings, r.policy, r.run, r.pg = s, policy, cfg.Context, pg
	return nil
}

func (r *reader) dsn() string { return r.settings.Connection.DSN }

func (r *reader) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, r.pg.Copy())
	if err != nil {
		return nil, connectionFailed(err, r.pg, r.dsn())
	}
	return conn, nil
}

// Check connects once and runs a trivial query.
func (r *reader) Check(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		return connectionFailed(err, r.pg, r.dsn())
	}
	return nil
}

// coordinatorLocked opens the connection holding the run's snapshot on first use.
func (r *reader) coordinatorLocked(ctx context.Context) (*pgx.Conn, error) {
	if r.coordinator != nil {
		return r.coordinator, nil
	}
	conn, err := r.connect(ctx)
	if err != nil {
		return nil, err
	}
	var snapshot string
	_, err = conn.Exec(ctx, beginSQL)
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT pg_catalog.pg_export_snapshot()").Scan(&snapshot)
	}
	if err != nil {
		conn.Close(context.Background())
		return nil, dativo.PluginFailed(
			"Cannot export a snapshot for consistent reads: "+redact(oneParagraph(err.Error()), r.pg, r.dsn()),
			"Connect to the server directly (not through a transaction-pooling proxy), as a user allowed to run pg_export_snapshot().")
	}
	r.coordinator, r.snapshot = conn, snapshot
	dativo.Logf("DEBUG go_postgres: exported snapshot %s", snapshot)
	return conn, nil
}

// Discover describes every table of tables: (or the query:) from the catalog.
func (r *reader) Discover(ctx context.Context) ([]dativo.Dataset, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.discoverLocked(ctx)
}

func (r *reader) discoverLocked(ctx context.Context) ([]dativo.Dataset, error) {
	conn, err := r.coordinatorLocked(ctx)
	if err != nil {
		return nil, err
	}
	var relations []*relation
	if r.settings.Query != nil {
		rel, err := queryRelation(ctx, conn, *r.settings.Query, r.policy)
		if err != nil {
			return nil, r.catalogError(err)
		}
		relations = append(relations, rel)
	} else {
		for _, name := range r.settings.Tables {
			rel, err := tableRelation(ctx, conn, name, r.policy)
			if err != nil {
				return nil, r.catalogError(err)
			}
			relations = append(relations, rel)
		}
	}
	byName := map[string]*relation{}
	var repeated []string
	datasets := make([]dativo.Dataset, 0, len(relations))
	for _, rel := range relations {
		if byName[rel.name] != nil {
			repeated = append(repeated, rel.name)
		}
		byName[rel.name] = rel
		datasets = append(datasets, rel.dataset())
	}
	if len(repeated) > 0 {
		sort.Strings(repeated)
		return nil, dativo.ConfigError("source.tables lists "+strings.Join(repeated, ", ")+" more than once", "")
	}
	r.relations = byName
	return datasets, nil
}

func (r *reader) catalogError(err error) error {
	var typed *dativo.Error
	if errors.As(err, &typed) {
		return err
	}
	return dativo.PluginFailed("Reading the catalog failed: "+redact(oneParagraph(err.Error()), r.pg, r.dsn()), "")
}

func (r *reader) relationLocked(ctx context.Context, name string) (*relation, error) {
	if r.relations[name] == nil {
		if _, err := r.discoverLocked(ctx); err != nil {
			return nil, err
		}
	}
	if rel := r.relations[name]; rel != nil {
		return rel, nil
	}
	known := make([]string, 0, len(r.relations))
	for n := range r.relations {
		known = append(known, n)
	}
	sort.Strings(known)
	return nil, dativo.ConfigError(fmt.Sprintf("Unknown dataset %q; this reader produces %v", name, known), "")
}

// Plan splits a dataset into key ranges over the run's snapshot: with parallelism > 1 and a primary
// key of one integer column, the key span after the watermark is cut into up to parallelism ranges
// (following the planner's histogram when the table was analysed); otherwise there is one split.
// With an incremental cursor and a committed state, only rows after its watermark are selected.
func (r *reader) Plan(ctx context.Context, dataset dativo.Dataset, state dativo.State) ([]dativo.Split, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rel, err := r.relationLocked(ctx, dataset.Name)
	if err != nil {
		return nil, err
	}
	conn, err := r.coordinatorLocked(ctx)
	if err != nil {
		return nil, err
	}
	after, err := r.afterWatermark(ctx, conn, rel, state)
	if err != nil {
		return nil, err
	}
	ranges := []string{""}
	if key := rel.integerKey(); r.run.Parallelism > 1 && key != "" {
		var low, high *int64
		if err := conn.QueryRow(ctx, minMaxSQL(rel, key, after)).Scan(&low, &high); err != nil {
			return nil, r.catalogError(err)
		}
		if low != nil && high != nil {
			histogram, err := r.histogram(ctx, conn, rel, key)
			if err != nil {
				return nil, r.catalogError(err)
			}
			ranges = ranges[:0]
			for _, kr := range keyRanges(*low, *high, r.run.Parallelism, histogram) {
				ranges = append(ranges, rangePredicate(key, kr))
			}
		}
	}
	schema := dativo.EncodeSchema(rel.schema())
	splits := make([]dativo.Split, len(ranges))
	for i, kr := range ranges {
		params, err := json.Marshal(splitParams{Dataset: rel.name, Snapshot: r.snapshot, Schema: schema, SQL: selectSQL(rel, after, kr)})
		if err != nil {
			return nil, err
		}
		splits[i] = dativo.Split{Dataset: rel.name, ID: strconv.Itoa(i), Params: params}
	}
	return splits, nil
}

func (r *reader) histogram(ctx context.Context, conn *pgx.Conn, rel *relation, key string) ([]int64, error) {
	var text *string
	err := conn.QueryRow(ctx, histogramSQL, rel.table[0], rel.table[1], key).Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && text == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, part := range strings.Split(strings.Trim(*text, "{}"), ",") {
		if b, err := strconv.ParseInt(part, 10, 64); err == nil {
			out = append(out, b)
		}
	}
	return out, nil
}

// watermark is the "cursor" object of a committed state (src/dativo/state.py: Watermark.to_state).
type watermark struct {
	Column     string    `json:"column"`
	Value      *string   `json:"value"`
	KeyColumns []string  `json:"key_columns"`
	Key        []*string `json:"key"`
}

// afterWatermark is the predicate (cursor, key…) > (watermark…), or "" for a full read.
func (r *reader) afterWatermark(ctx context.Context, conn *pgx.Conn, rel *relation, state dativo.State) (string, error) {
	cursor := r.run.Cursor
	if cursor == "" {
		return "", nil
	}
	if _, ok := rel.column(cursor); !ok {
		candidates := strings.Join(rel.cursorCandidates(), ", ")
		if candidates == "" {
			candidates = "none"
		}
		return "", dativo.ConfigError(fmt.Sprintf("incremental.cursor '%s' is not a column of %s", cursor, rel.name),
			"Use one of its cursor candidates: "+candidates+".")
	}
	mismatch := func(detail string) error {
		return dativo.ConfigError(
			fmt.Sprintf("The committed incremental state of %s does not match its columns: %s", rel.name, detail),
			"Reset the dataset's state (run a full refresh) after changing its columns.")
	}
	var decoded struct {
		Cursor *watermark `json:"cursor"`
	}
	if len(state) > 0 {
		if err := json.Unmarshal(state, &decoded); err != nil {
			return "", mismatch(err.Error())
		}
	}
	w := decoded.Cursor
	if w == nil || w.Value == nil {
		return "", nil
	}
	if w.Column != cursor {
		return "", dativo.ConfigError(
			fmt.Sprintf("The committed state of %s tracks cursor '%s', but the job now uses '%s'", rel.name, w.Column, cursor),
			"Reset the dataset's state (run a full refresh) when changing incremental.cursor.")
	}
	columns := append([]string{w.Column}, w.KeyColumns...)
	texts := append([]*string{w.Value}, w.Key...)
	if len(texts) < len(columns) {
		return "", mismatch("the watermark has fewer key values than key columns")
	}
	literals := make([]string, len(columns))
	for i, name := range columns {
		c, ok := rel.column(name)
		if !ok {
			return "", mismatch(fmt.Sprintf("no column named %s", name))
		}
		if texts[i] == nil {
			literals[i] = "NULL::" + c.pgType
		} else {
			// Typed literal of the value's text form (Arrow's cast to string, which PostgreSQL parses).
			literals[i] = quoteLiteral(*texts[i]) + "::" + c.pgType
		}
	}
	// Check the literals now, so a state that does not parse is a clear error and not a failed read.
	err := inSavepoint(ctx, conn, func() error {
		_, err := conn.Exec(ctx, "SELECT "+strings.Join(literals, ", "))
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return "", mismatch(pgErr.Message)
		}
		return "", r.catalogError(err)
	}
	return afterPredicate(columns, literals), nil
}

// Read streams one split inside the run's snapshot, batch by batch, on its own connection.
func (r *reader) Read(ctx context.Context, split dativo.Split) (array.RecordReader, error) {
	var params splitParams
	if err := json.Unmarshal(split.Params, &params); err != nil || params.SQL == "" {
		return nil, dativo.PluginFailed(fmt.Sprintf("split %s of %s has no go_postgres params", split.ID, split.Dataset), "")
	}
	schema, err := dativo.DecodeSchema(params.Schema)
	if err != nil {
		return nil, dativo.PluginFailed(err.Error(), "")
	}
	r.mu.Lock()
	pg, dsn, batchBytes := r.pg, r.dsn(), r.settings.BatchSizeBytes
	if pg == nil {
		r.mu.Unlock()
		return nil, dativo.PluginFailed("read before configure", "")
	}
	ctx, cancel := context.WithCancel(ctx)
	if r.reads == nil {
		r.reads = map[int]context.CancelFunc{}
	}
	id := r.nextRead
	r.reads[id], r.nextRead = cancel, r.nextRead+1
	r.mu.Unlock()
	return dativo.Stream(ctx, schema, func(ctx context.Context, emit dativo.Emit) error {
		defer func() {
			r.mu.Lock()
			delete(r.reads, id)
			r.mu.Unlock()
			cancel()
		}()
		err := readSplit(ctx, pg, dsn, params, schema, batchBytes, emit)
		if err != nil && ctx.Err() == nil {
			return readFailed(err, params.Dataset, pg, dsn)
		}
		return err
	}), nil
}

func readSplit(ctx context.Context, pg *pgx.ConnConfig, dsn string, params splitParams, schema *arrow.Schema,
	batchBytes int, emit dativo.Emit) error {
	conn, err := pgconn.ConnectConfig(ctx, &pg.Copy().Config)
	if err != nil {
		return connectionFailed(err, pg, dsn)
	}
	defer conn.Close(context.Background())
	// The simple protocol runs both statements in one round trip.
	if _, err := conn.Exec(ctx, beginSQL+"; "+snapshotStatements(params.Snapshot)).ReadAll(); err != nil {
		return err
	}

	mem := memory.DefaultAllocator
	decoders := make([]*decoder, schema.NumFields())
	for i, field := range schema.Fields() {
		d, err := newDecoder(field, mem)
		if err != nil {
			return err
		}
		defer d.builder.Release()
		decoders[i] = d
	}
	result := conn.ExecParams(ctx, params.SQL, nil, nil, nil, []int16{pgBinary})
	fields := result.FieldDescriptions()
	if fields == nil { // the statement failed; Close returns why
		_, err := result.Close()
		return err
	}
	// On every early return below the result is abandoned, not drained: closing the connection (deferred)
	// stops the server sending the rest of the split.
	if len(fields) != len(decoders) {
		return dativo.PluginFailed(fmt.Sprintf("the query returned %d columns, %d were planned", len(fields), len(decoders)), "")
	}
	for i, f := range fields {
		if !decoders[i].oids[f.DataTypeOID] {
			return dativo.PluginFailed(fmt.Sprintf("column %s arrived as type oid %d, which go_postgres does not decode as %s",
				f.Name, f.DataTypeOID, arrowTypeName(decoders[i].field.Type)), "")
		}
	}
	rows, size := 0, 0
	flush := func() error {
		columns := make([]arrow.Array, len(decoders))
		for i, d := range decoders {
			columns[i] = d.builder.NewArray()
		}
		batch := array.NewRecordBatch(schema, columns, int64(rows))
		for _, c := range columns {
			c.Release()
		}
		rows, size = 0, 0
		return emit(batch)
	}
	for result.NextRow() {
		for i, v := range result.Values() {
			d := decoders[i]
			if v == nil {
				d.builder.AppendNull()
				continue
			}
			if err := d.decode(v); err != nil {
				return valueError(params.Dataset, d.field, err)
			}
			size += len(v)
		}
		rows++
		size += len(decoders) // offsets and validity, roughly
		if size >= batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if _, err := result.Close(); err != nil {
		return err
	}
	if rows > 0 {
		return flush()
	}
	return nil
}

// pgBinary is the format code of PostgreSQL's binary wire format.
const pgBinary = 1

// Close ends the snapshot (closing the coordinator) and stops reads still running, which closes their
// connections.
func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeLocked()
	return nil
}

func (r *reader) closeLocked() {
	for _, cancel := range r.reads {
		cancel()
	}
	if r.coordinator != nil {
		_ = r.coordinator.Close(context.Background())
	}
	r.coordinator, r.snapshot, r.relations = nil, "", nil
}
