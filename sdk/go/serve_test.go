package dativo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

// fake is a reader and writer that keeps what it was asked in memory.
type fake struct {
	BasePlugin
	mu        sync.Mutex
	cfg       Config
	written   []Written
	committed map[string]bool
	closed    int
}

type fakeOptions struct {
	Rows  int    `json:"rows"`
	Fail  string `json:"fail"`
	Batch int    `json:"batch"`
}

func (f *fake) Info() Info { return Info{Name: "fake", Version: "1.2.3"} }

func (f *fake) Configure(_ context.Context, cfg Config) error {
	var opts fakeOptions
	if err := cfg.DecodeOptions(&opts); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	return nil
}

func (f *fake) options() fakeOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	opts := fakeOptions{Rows: 10, Batch: 4}
	_ = json.Unmarshal(f.cfg.Options, &opts)
	return opts
}

func (f *fake) counters() *Counters {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg.Counters
}

func (f *fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed++
	return nil
}

func (f *fake) Check(context.Context) error {
	if f.options().Fail == "check" {
		return fmt.Errorf("while checking: %w", ConnectionFailed("cannot reach the fake", "start it"))
	}
	return nil
}

func (f *fake) Discover(context.Context) ([]Dataset, error) {
	if f.options().Fail == "panic" {
		panic("boom")
	}
	return []Dataset{{Name: "public.things", Schema: testSchema, PrimaryKey: []string{"id"}}}, nil
}

func (f *fake) Plan(_ context.Context, dataset Dataset, state State) ([]Split, error) {
	params, _ := json.Marshal(map[string]any{"state": state, "schema_fields": dataset.Schema.NumFields()})
	return []Split{{Dataset: dataset.Name, ID: "0", Params: params}, {Dataset: dataset.Name, ID: "1"}}, nil
}

func (f *fake) Read(ctx context.Context, split Split) (array.RecordReader, error) {
	opts := f.options()
	if opts.Fail == "read-now" {
		return nil, ConfigError("column x has type money", "use fallback")
	}
	return Stream(ctx, testSchema, func(ctx context.Context, emit Emit) error {
		ids := array.NewInt64Builder(memory.DefaultAllocator)
		names := array.NewStringBuilder(memory.DefaultAllocator)
		defer ids.Release()
		defer names.Release()
		for start := 0; start < opts.Rows; start += opts.Batch {
			if opts.Fail == "read-later" && start > 0 {
				return PluginFailed("the fake broke after one batch", "")
			}
			for i := start; i < min(start+opts.Batch, opts.Rows); i++ {
				ids.Append(int64(i))
				if i%3 == 0 {
					names.AppendNull()
				} else {
					names.Append(fmt.Sprintf("n%d", i))
				}
			}
			a, b := ids.NewArray(), names.NewArray()
			f.counters().Add("rows.read", int64(a.Len()))
			batch := array.NewRecordBatch(testSchema, []arrow.Array{a, b}, int64(a.Len()))
			a.Release()
			b.Release()
			if err := emit(batch); err != nil {
				return err
			}
		}
		return nil
	}), nil
}

func (f *fake) State(_ context.Context, dataset Dataset) (State, error) {
	return State(fmt.Sprintf(`{"dataset": %q}`, dataset.Name)), nil
}

func (f *fake) Prepare(_ context.Context, _ Dataset, schema *arrow.Schema, mode Mode) error {
	if mode != ModeAppend {
		return ConfigError("fake writes append only", "")
	}
	if !schema.Equal(testSchema) {
		return SchemaMismatch("unexpected schema "+schema.String(), "")
	}
	return nil
}

func (f *fake) Write(_ context.Context, split Split, records array.RecordReader) (Written, error) {
	var rows int64
	for records.Next() {
		rows += records.RecordBatch().NumRows()
	}
	w := Written{Files: []string{"f-" + split.ID}, Rows: rows, Bytes: rows * 8, Extra: map[string]any{"k": "v"}}
	f.mu.Lock()
	f.written = append(f.written, w)
	f.mu.Unlock()
	return w, records.Err()
}

func (f *fake) Commit(_ context.Context, c Commit) (CommitInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.committed == nil {
		f.committed = map[string]bool{}
	}
	if f.committed[c.RunID] {
		return CommitInfo{NoOp: true}, nil
	}
	f.committed[c.RunID] = true
	var rows int64
	for _, w := range c.Files {
		rows += w.Rows
	}
	return CommitInfo{CommitID: "c-" + c.RunID, Rows: rows}, nil
}

func (f *fake) Abort(context.Context, []Written) error { return nil }

// harness runs Serve's loop on a Unix socket in a temp dir, as a host gives it, and connects a Flight
// client to the location its handshake names.
type harness struct {
	t      *testing.T
	socket string // what $DATIVO_FLIGHT_SOCKET names
	client flight.Client
	stdin  *os.File // the host's end of the plugin's stdin
	exit   chan int
	hello  map[string]any
}

func start(t *testing.T, plugin Plugin, args ...string) *harness {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "plugin.sock")
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW := io.Pipe()
	h := &harness{t: t, socket: socket, stdin: stdinW, exit: make(chan int, 1)}
	go func() {
		h.exit <- run(plugin, args, socket, stdinR, outW)
		outW.Close()
	}()
	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatalf("no handshake: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if err := json.Unmarshal([]byte(line), &h.hello); err != nil {
		t.Fatalf("handshake %q is not JSON: %v", line, err)
	}
	location := h.hello["location"].(string)
	client, err := flight.NewClientWithMiddleware("unix://"+strings.TrimPrefix(location, "grpc+unix://"), nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.client = client
	t.Cleanup(func() {
		client.Close()
		stdinW.Close()
		select {
		case <-h.exit:
		case <-time.After(10 * time.Second):
			t.Error("the plugin did not exit after stdin closed")
		}
	})
	return h
}

// action runs one action and decodes its result into out; it returns the DATIVO error, if any.
func (h *harness) action(name string, body any, out any) *wireError {
	h.t.Helper()
	raw, _ := json.Marshal(body)
	stream, err := h.client.DoAction(context.Background(), &flight.Action{Type: name, Body: raw})
	if err != nil {
		h.t.Fatal(err)
	}
	result, err := stream.Recv()
	if err != nil {
		return parseError(h.t, err)
	}
	if out != nil {
		if err := json.Unmarshal(result.Body, out); err != nil {
			h.t.Fatalf("%s result %s: %v", name, result.Body, err)
		}
	}
	return nil
}

func parseError(t *testing.T, err error) *wireError {
	t.Helper()
	msg := err.Error()
	at := strings.Index(msg, ErrorPrefix)
	if at < 0 {
		t.Fatalf("error without a DATIVO-ERROR line: %v", err)
	}
	line := msg[at+len(ErrorPrefix):]
	line = line[:strings.Index(line, "\n")]
	var wire wireError
	if err := json.Unmarshal([]byte(line), &wire); err != nil {
		t.Fatalf("DATIVO-ERROR line %q: %v", line, err)
	}
	return &wire
}

// read opens the stream of one split, failing the test if it does not open.
func (h *harness) read(t *testing.T, split Split) *flight.Reader {
	t.Helper()
	ticket, _ := json.Marshal(map[string]any{"split": split})
	stream, err := h.client.DoGet(context.Background(), &flight.Ticket{Ticket: ticket})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := flight.NewRecordReader(stream)
	if err != nil {
		t.Fatal(err)
	}
	return reader
}

func (h *harness) configure(role Role, options string) *wireError {
	return h.action("configure", map[string]any{
		"role": role, "options": json.RawMessage(options), "settings": map[string]any{"path": "x"},
		"context": map[string]any{"job": "j", "run_id": "r1", "plugin": "fake", "parallelism": 2, "cursor": nil, "work_dir": "/tmp"},
	}, nil)
}

func TestHandshakeAndSpec(t *testing.T) {
	h := start(t, &fake{})
	if h.hello["dativo_flight"] != float64(1) || h.hello["name"] != "fake" || h.hello["version"] != "1.2.3" {
		t.Fatalf("handshake %v", h.hello)
	}
	if !strings.HasPrefix(h.hello["location"].(string), "grpc+unix:///") {
		t.Fatalf("location %v", h.hello["location"])
	}
	var health map[string]bool
	if e := h.action("health", struct{}{}, &health); e != nil || !health["ok"] {
		t.Fatalf("health: %v %v", health, e)
	}
	var spec map[string]any
	if e := h.action("spec", struct{}{}, &spec); e != nil {
		t.Fatal(e)
	}
	if spec["language"] != "go" || spec["api_version"] != ">=1,<2" || fmt.Sprint(spec["roles"]) != "[reader writer]" {
		t.Fatalf("spec %v", spec)
	}
}

func TestListensOnTheSocketItIsGiven(t *testing.T) {
	// A host connects only to the socket it named: --listen cannot move the plugin elsewhere.
	h := start(t, &fake{}, "--listen", "grpc://127.0.0.1:0")
	if got, want := h.hello["location"], "grpc+unix://"+h.socket; got != want {
		t.Fatalf("the handshake names %v, want exactly %v", got, want)
	}
	info, err := os.Lstat(h.socket)
	if err != nil || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no socket at %s: %v %v", h.socket, info, err)
	}
	var health map[string]bool
	if e := h.action("health", struct{}{}, &health); e != nil || !health["ok"] {
		t.Fatalf("health: %v %v", health, e)
	}
}

func TestConfigureComesFirstAndValidatesOptions(t *testing.T) {
	h := start(t, &fake{})
	if e := h.action("discover", struct{}{}, nil); e == nil || e.Kind != KindPluginFailed || !strings.Contains(e.Message, "configure must come first") {
		t.Fatalf("discover before configure: %+v", e)
	}
	e := h.configure(RoleReader, `{"rows": 3, "colour": "red"}`)
	if e == nil || e.Kind != KindConfig || !strings.Contains(e.Message, `reader.options has an unknown key "colour"`) {
		t.Fatalf("unknown option: %+v", e)
	}
	e = h.configure(RoleReader, `{"rows": "many"}`)
	if e == nil || e.Kind != KindConfig || !strings.Contains(e.Message, "reader.options.rows must be an integer") {
		t.Fatalf("bad type: %+v", e)
	}
	if e := h.configure(RoleReader, `{"fail": "check"}`); e != nil {
		t.Fatal(e)
	}
	e = h.action("check", struct{}{}, nil)
	if e == nil || e.Kind != KindConnectionFailed || e.Message != "while checking: cannot reach the fake" || e.Hint != "start it" {
		t.Fatalf("check: %+v", e)
	}
}

func TestDiscoverPlanAndRead(t *testing.T) {
	h := start(t, &fake{})
	if e := h.configure(RoleReader, `{"rows": 10, "batch": 4}`); e != nil {
		t.Fatal(e)
	}
	var discovered struct {
		Datasets []Dataset `json:"datasets"`
	}
	if e := h.action("discover", struct{}{}, &discovered); e != nil {
		t.Fatal(e)
	}
	ds := discovered.Datasets[0]
	if ds.Name != "public.things" || !ds.Schema.Equal(testSchema) || ds.PrimaryKey[0] != "id" || ds.CursorCandidates == nil {
		t.Fatalf("dataset %+v", ds)
	}
	var planned struct {
		Splits []Split `json:"splits"`
	}
	if e := h.action("plan", map[string]any{"dataset": ds, "state": map[string]int{"n": 1}}, &planned); e != nil {
		t.Fatal(e)
	}
	if len(planned.Splits) != 2 || string(planned.Splits[1].Params) != "{}" ||
		!strings.Contains(string(planned.Splits[0].Params), `"state":{"n":1}`) {
		t.Fatalf("splits %+v / %s", planned.Splits, planned.Splits[0].Params)
	}

	reader := h.read(t, planned.Splits[0])
	defer reader.Release()
	var rows, batches int64
	for reader.Next() {
		rows += reader.RecordBatch().NumRows()
		batches++
	}
	if reader.Err() != nil || rows != 10 || batches != 3 || !reader.Schema().Equal(testSchema) {
		t.Fatalf("read %d rows in %d batches: %v", rows, batches, reader.Err())
	}
}

func readError(t *testing.T, h *harness) *wireError {
	t.Helper()
	ticket, _ := json.Marshal(map[string]any{"split": Split{Dataset: "public.things", ID: "0"}})
	stream, err := h.client.DoGet(context.Background(), &flight.Ticket{Ticket: ticket})
	if err != nil {
		return parseError(t, err)
	}
	reader, err := flight.NewRecordReader(stream)
	if err != nil {
		return parseError(t, err)
	}
	defer reader.Release()
	for reader.Next() {
	}
	if reader.Err() == nil {
		t.Fatal("the read did not fail")
	}
	return parseError(t, reader.Err())
}

func TestReadErrorsAndPanics(t *testing.T) {
	h := start(t, &fake{})
	if e := h.configure(RoleReader, `{"fail": "read-now"}`); e != nil {
		t.Fatal(e)
	}
	if e := readError(t, h); e.Kind != KindConfig || e.Hint != "use fallback" {
		t.Fatalf("read-now: %+v", e)
	}
	if e := h.configure(RoleReader, `{"fail": "read-later", "rows": 10}`); e != nil {
		t.Fatal(e)
	}
	if e := readError(t, h); e.Kind != KindPluginFailed || e.Message != "the fake broke after one batch" {
		t.Fatalf("read-later: %+v", e)
	}
	if e := h.configure(RoleReader, `{"fail": "panic"}`); e != nil {
		t.Fatal(e)
	}
	e := h.action("discover", struct{}{}, nil)
	if e == nil || e.Kind != KindPluginFailed || !strings.Contains(e.Message, "panicked in action discover: boom") {
		t.Fatalf("panic: %+v", e)
	}
	var health map[string]bool
	if e := h.action("health", struct{}{}, &health); e != nil || !health["ok"] {
		t.Fatal("the plugin did not survive the panic")
	}
}

func TestWritePrepareCommitState(t *testing.T) {
	f := &fake{}
	h := start(t, f)
	if e := h.configure(RoleWriter, `{}`); e != nil {
		t.Fatal(e)
	}
	ds := Dataset{Name: "public.things", Schema: testSchema}
	if e := h.action("prepare", map[string]any{"dataset": ds, "schema": EncodeSchema(testSchema), "mode": "merge"}, nil); e == nil || e.Kind != KindConfig {
		t.Fatalf("prepare merge: %+v", e)
	}
	if e := h.action("prepare", map[string]any{"dataset": ds, "schema": EncodeSchema(testSchema), "mode": "append"}, nil); e != nil {
		t.Fatal(e)
	}

	put, err := h.client.DoPut(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cmd, _ := json.Marshal(map[string]any{"split": Split{Dataset: ds.Name, ID: "7"}})
	w := flight.NewRecordWriter(put, ipc.WithSchema(testSchema))
	w.SetFlightDescriptor(&flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd})
	batch := sampleBatch(5)
	for i := 0; i < 3; i++ {
		if err := w.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	batch.Release()
	w.Close()
	if err := put.CloseSend(); err != nil {
		t.Fatal(err)
	}
	result, err := put.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var written Written
	if err := json.Unmarshal(result.AppMetadata, &written); err != nil {
		t.Fatal(err)
	}
	if written.Rows != 15 || written.Dataset != ds.Name || written.Split != "7" || written.Files[0] != "f-7" || written.Extra["k"] != "v" {
		t.Fatalf("written %+v", written)
	}

	var info map[string]any
	commit := map[string]any{"dataset": ds, "files": []Written{written}, "state": map[string]int{"x": 1}, "run_id": "r1"}
	if e := h.action("commit", commit, &info); e != nil || info["commit_id"] != "c-r1" || info["rows"] != float64(15) || info["no_op"] != false {
		t.Fatalf("commit %v %v", info, e)
	}
	if e := h.action("commit", commit, &info); e != nil || info["commit_id"] != nil || info["no_op"] != true {
		t.Fatalf("second commit %v %v", info, e)
	}
	var state map[string]map[string]string
	if e := h.action("state", map[string]any{"dataset": ds}, &state); e != nil || state["state"]["dataset"] != ds.Name {
		t.Fatalf("state %v %v", state, e)
	}
	if e := h.action("abort", map[string]any{"files": []Written{written}}, nil); e != nil {
		t.Fatal(e)
	}
}

func sampleBatch(n int) arrow.RecordBatch {
	ids := array.NewInt64Builder(memory.DefaultAllocator)
	names := array.NewStringBuilder(memory.DefaultAllocator)
	for i := 0; i < n; i++ {
		ids.Append(int64(i))
		names.Append("x")
	}
	a, b := ids.NewArray(), names.NewArray()
	defer a.Release()
	defer b.Release()
	return array.NewRecordBatch(testSchema, []arrow.Array{a, b}, int64(n))
}

func TestCloseSendsWhatTheRoleCounted(t *testing.T) {
	h := start(t, &fake{})
	if e := h.configure(RoleReader, `{"rows": 10, "batch": 4}`); e != nil {
		t.Fatal(e)
	}
	for _, id := range []string{"0", "1"} {
		reader := h.read(t, Split{Dataset: "public.things", ID: id})
		for reader.Next() {
		}
		reader.Release()
	}
	var closed struct {
		Counters map[string]map[string]int64 `json:"counters"`
	}
	if e := h.action("close", map[string]string{"role": "reader"}, &closed); e != nil {
		t.Fatal(e)
	}
	if got := closed.Counters["reader"]["rows.read"]; got != 20 || len(closed.Counters) != 1 {
		t.Fatalf("counters %+v", closed.Counters)
	}
	closed.Counters = nil
	if e := h.action("close", map[string]string{"role": "reader"}, &closed); e != nil || len(closed.Counters) != 0 {
		t.Fatalf("a second close sent %+v (%v)", closed.Counters, e)
	}
}

func TestCountersAddUpAcrossGoroutinesAndSaturate(t *testing.T) {
	var c Counters
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.Add("rows", 1)
			}
		}()
	}
	wg.Wait()
	c.Add("big", math.MaxInt64)
	c.Add("big", 5)
	var none *Counters
	none.Add("ignored", 1)
	if got := c.Snapshot(); got["rows"] != 8000 || got["big"] != math.MaxInt64 || len(none.Snapshot()) != 0 {
		t.Fatalf("snapshot %+v", got)
	}
}

func TestShutdownExitsAndCloses(t *testing.T) {
	f := &fake{}
	h := start(t, f)
	if e := h.action("shutdown", struct{}{}, nil); e != nil {
		t.Fatal(e)
	}
	select {
	case code := <-h.exit:
		h.exit <- code // for the cleanup
		if code != 0 {
			t.Fatalf("exit status %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not exit after shutdown")
	}
	if f.closed != 1 {
		t.Fatalf("Close called %d times", f.closed)
	}
}

func TestStdinEOFExits(t *testing.T) {
	h := start(t, &fake{})
	h.stdin.Close()
	select {
	case code := <-h.exit:
		h.exit <- code
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin did not exit at stdin EOF")
	}
}

func TestStreamReleasedEarlyStopsTheProducer(t *testing.T) {
	stopped := make(chan error, 1)
	reader := Stream(context.Background(), testSchema, func(ctx context.Context, emit Emit) error {
		for {
			if err := emit(sampleBatch(2)); err != nil {
				stopped <- err
				return err
			}
		}
	})
	if !reader.Next() || reader.RecordBatch().NumRows() != 2 {
		t.Fatal("no first batch")
	}
	reader.Release()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("producer stopped with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the producer is still running")
	}
}

func TestStreamRefusesAWrongSchema(t *testing.T) {
	other := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int32}}, nil)
	reader := Stream(context.Background(), other, func(ctx context.Context, emit Emit) error {
		return emit(sampleBatch(1))
	})
	defer reader.Release()
	for reader.Next() {
	}
	var typed *Error
	if !errors.As(reader.Err(), &typed) || typed.Kind != KindSchemaMismatch {
		t.Fatalf("err %v", reader.Err())
	}
}

func TestListenFlag(t *testing.T) {
	for args, want := range map[string]string{
		"--listen grpc://127.0.0.1:0": "grpc://127.0.0.1:0",
		"-x --listen=grpc+unix:///a":  "grpc+unix:///a",
		"--other":                     "",
	} {
		if got := ListenFlag(strings.Fields(args)); got != want {
			t.Errorf("%q: %q, want %q", args, got, want)
		}
	}
}
