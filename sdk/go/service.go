package dativo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// actions lists the DoAction types of protocol.md §2, with their descriptions for ListActions.
var actions = []struct{ name, description string }{
	{"health", "is the plugin alive"},
	{"spec", "name, version, language, roles, API range and option schema"},
	{"configure", "validate and keep the job's options and settings; must come first"},
	{"check", "can the source or target be reached"},
	{"discover", "the datasets a reader offers"},
	{"plan", "the splits of one dataset"},
	{"prepare", "create or check the target of one dataset"},
	{"state", "the incremental state of the last commit"},
	{"commit", "publish written files and state atomically"},
	{"abort", "discard written files"},
	{"close", "release connections and files"},
	{"shutdown", "exit after answering"},
}

// service implements the Flight service of protocol.md on top of one Plugin.
type service struct {
	flight.BaseFlightServer
	plugin   Plugin
	shutdown func() // asks Serve to stop; called after the shutdown action has answered

	mu         sync.Mutex
	configured map[Role]bool
	counters   map[Role]*Counters // each role's, sent back by close
}

func newService(plugin Plugin, shutdown func()) *service {
	return &service{plugin: plugin, shutdown: shutdown, configured: map[Role]bool{}, counters: map[Role]*Counters{}}
}

func (s *service) ListActions(_ *flight.Empty, stream flight.FlightService_ListActionsServer) error {
	for _, a := range actions {
		if err := stream.Send(&flight.ActionType{Type: a.name, Description: a.description}); err != nil {
			return err
		}
	}
	return nil
}

// DoAction answers one action with one JSON result.
func (s *service) DoAction(action *flight.Action, stream flight.FlightService_DoActionServer) error {
	result, err := s.act(stream.Context(), action.GetType(), action.GetBody())
	if err != nil {
		return toStatus(err)
	}
	body, err := json.Marshal(result)
	if err != nil {
		return toStatus(PluginFailed(fmt.Sprintf("the result of %s is not JSON: %v", action.GetType(), err), ""))
	}
	if err := stream.Send(&flight.Result{Body: body}); err != nil {
		return err
	}
	if action.GetType() == "shutdown" && s.shutdown != nil {
		go s.shutdown() // after this handler returns, so the answer is sent first
	}
	return nil
}

func (s *service) act(ctx context.Context, name string, body []byte) (result any, err error) {
	defer func() {
		if value := recover(); value != nil {
			result, err = nil, recovered("action "+name, value)
		}
	}()
	empty := struct{}{}
	switch name {
	case "health":
		return map[string]bool{"ok": true}, nil
	case "spec":
		return s.spec(), nil
	case "configure":
		return empty, s.configure(ctx, body)
	case "close":
		var req struct {
			Role Role `json:"role"`
		}
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		s.mu.Lock()
		counters := map[Role]map[string]int64{}
		for role, c := range s.counters {
			if req.Role == "" || req.Role == role {
				counters[role] = c.Snapshot()
				delete(s.counters, role)
			}
		}
		s.configured = map[Role]bool{}
		s.mu.Unlock()
		return map[string]any{"counters": counters}, s.plugin.Close()
	case "shutdown":
		return empty, nil
	}
	if err := s.requireConfigured(name); err != nil {
		return nil, err
	}
	switch name {
	case "check":
		return empty, s.plugin.Check(ctx)
	case "discover":
		reader, err := s.reader(name)
		if err != nil {
			return nil, err
		}
		datasets, err := reader.Discover(ctx)
		if datasets == nil {
			datasets = []Dataset{}
		}
		return map[string][]Dataset{"datasets": datasets}, err
	case "plan":
		reader, err := s.reader(name)
		if err != nil {
			return nil, err
		}
		var req struct {
			Dataset Dataset `json:"dataset"`
			State   State   `json:"state"`
		}
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		splits, err := reader.Plan(ctx, req.Dataset, nullIsNil(req.State))
		for i := range splits {
			if len(splits[i].Params) == 0 {
				splits[i].Params = json.RawMessage("{}")
			}
		}
		if splits == nil {
			splits = []Split{}
		}
		return map[string][]Split{"splits": splits}, err
	}
	writer, err := s.writer(name)
	if err != nil {
		return nil, err
	}
	switch name {
	case "prepare":
		var req struct {
			Dataset Dataset `json:"dataset"`
			Schema  string  `json:"schema"`
			Mode    Mode    `json:"mode"`
		}
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		schema, err := DecodeSchema(req.Schema)
		if err != nil {
			return nil, PluginFailed("prepare: "+err.Error(), "")
		}
		return empty, writer.Prepare(ctx, req.Dataset, schema, req.Mode)
	case "state":
		var req struct {
			Dataset Dataset `json:"dataset"`
		}
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		state, err := writer.State(ctx, req.Dataset)
		if len(state) == 0 {
			state = json.RawMessage("null")
		}
		return map[string]State{"state": state}, err
	case "commit":
		var req Commit
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		req.State = nullIsNil(req.State)
		return writer.Commit(ctx, req)
	case "abort":
		var req struct {
			Files []Written `json:"files"`
		}
		if err := decodeBody(name, body, &req); err != nil {
			return nil, err
		}
		return empty, writer.Abort(ctx, req.Files)
	}
	return nil, PluginFailed(fmt.Sprintf("unknown action %q (this plugin speaks protocol version %d)", name, ProtocolVersion), "")
}

func (s *service) spec() map[string]any {
	info := s.plugin.Info()
	roles := []Role{}
	if _, ok := s.plugin.(Reader); ok {
		roles = append(roles, RoleReader)
	}
	if _, ok := s.plugin.(Writer); ok {
		roles = append(roles, RoleWriter)
	}
	api := info.APIVersion
	if api == "" {
		api = ">=1,<2"
	}
	schema := info.ConfigSchema
	if schema == nil {
		schema = map[string]any{"type": "object"}
	}
	return map[string]any{
		"name": info.Name, "version": info.Version, "language": "go", "roles": roles,
		"api_version": api, "config_schema": schema,
	}
}

func (s *service) configure(ctx context.Context, body []byte) error {
	var cfg Config
	if err := decodeBody("configure", body, &cfg); err != nil {
		return err
	}
	switch cfg.Role {
	case RoleReader:
		if _, ok := s.plugin.(Reader); !ok {
			return ConfigError(s.plugin.Info().Name+" is not a reader", "Name it under target.writer instead.")
		}
	case RoleWriter:
		if _, ok := s.plugin.(Writer); !ok {
			return ConfigError(s.plugin.Info().Name+" is not a writer", "Name it under source.reader instead.")
		}
	default:
		return PluginFailed(fmt.Sprintf("configure: unknown role %q", cfg.Role), "")
	}
	cfg.Counters = &Counters{}
	if err := s.plugin.Configure(ctx, cfg); err != nil {
		return err
	}
	limitMemory(cfg.Context.MemoryBytes)
	s.mu.Lock()
	s.configured[cfg.Role] = true
	s.counters[cfg.Role] = cfg.Counters
	s.mu.Unlock()
	return nil
}

func (s *service) requireConfigured(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.configured) == 0 {
		return PluginFailed(fmt.Sprintf("%s before configure: configure must come first", name), "")
	}
	return nil
}

func (s *service) reader(action string) (Reader, error) {
	if r, ok := s.plugin.(Reader); ok {
		return r, nil
	}
	return nil, PluginFailed(fmt.Sprintf("%s: %s is not a reader", action, s.plugin.Info().Name), "")
}

func (s *service) writer(action string) (Writer, error) {
	if w, ok := s.plugin.(Writer); ok {
		return w, nil
	}
	return nil, PluginFailed(fmt.Sprintf("%s: %s is not a writer", action, s.plugin.Info().Name), "")
}

// DoGet streams one split: the ticket is the JSON {"split": split}.
func (s *service) DoGet(ticket *flight.Ticket, stream flight.FlightService_DoGetServer) (err error) {
	defer func() {
		if value := recover(); value != nil {
			err = recovered("read", value)
		}
		err = toStatus(err)
	}()
	if err := s.requireConfigured("DoGet"); err != nil {
		return err
	}
	reader, err := s.reader("DoGet")
	if err != nil {
		return err
	}
	var req struct {
		Split *Split `json:"split"`
	}
	if err := decodeBody("DoGet ticket", ticket.GetTicket(), &req); err != nil {
		return err
	}
	if req.Split == nil {
		return PluginFailed(`DoGet: the ticket has no "split"`, "")
	}
	records, err := reader.Read(stream.Context(), *req.Split)
	if err != nil {
		return err
	}
	if records == nil {
		return PluginFailed(fmt.Sprintf("Read(%s/%s) returned no RecordReader", req.Split.Dataset, req.Split.ID), "")
	}
	defer records.Release()
	out := flight.NewRecordWriter(stream, ipc.WithSchema(records.Schema()))
	for records.Next() {
		if err := out.Write(records.RecordBatch()); err != nil {
			out.Close()
			return err
		}
	}
	if err := records.Err(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// DoPut hands one split's stream to Writer.Write; the descriptor's command is the JSON {"split": split}.
// When the stream ends it answers one PutResult whose app_metadata is the JSON of Written.
func (s *service) DoPut(stream flight.FlightService_DoPutServer) (err error) {
	defer func() {
		if value := recover(); value != nil {
			err = recovered("write", value)
		}
		err = toStatus(err)
	}()
	if err := s.requireConfigured("DoPut"); err != nil {
		return err
	}
	writer, err := s.writer("DoPut")
	if err != nil {
		return err
	}
	records, err := flight.NewRecordReader(stream)
	if err != nil {
		return PluginFailed("DoPut: cannot read the stream's schema: "+err.Error(), "")
	}
	defer records.Release()
	descriptor := records.LatestFlightDescriptor()
	if descriptor == nil || descriptor.GetType() != flight.DescriptorCMD {
		return PluginFailed("DoPut: the first message must carry a CMD descriptor {\"split\": split}", "")
	}
	var req struct {
		Split *Split `json:"split"`
	}
	if err := decodeBody("DoPut descriptor", descriptor.GetCmd(), &req); err != nil {
		return err
	}
	if req.Split == nil {
		return PluginFailed(`DoPut: the descriptor has no "split"`, "")
	}
	written, err := writer.Write(stream.Context(), *req.Split, records)
	if err != nil {
		return err
	}
	for records.Next() { // a writer that stopped early must still let the host finish sending
	}
	if err := records.Err(); err != nil {
		return err
	}
	if written.Dataset == "" {
		written.Dataset = req.Split.Dataset
	}
	if written.Split == "" {
		written.Split = req.Split.ID
	}
	if written.Files == nil {
		written.Files = []string{}
	}
	if written.Extra == nil {
		written.Extra = map[string]any{}
	}
	meta, err := json.Marshal(written)
	if err != nil {
		return PluginFailed("DoPut: the Written result is not JSON: "+err.Error(), "")
	}
	return stream.Send(&flight.PutResult{AppMetadata: meta})
}

func decodeBody(what string, body []byte, v any) error {
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var typed *Error
		if errors.As(err, &typed) {
			return err
		}
		return PluginFailed(fmt.Sprintf("%s: the host sent a body that is not the expected JSON: %v", what, err), "")
	}
	return nil
}

func nullIsNil(state State) State {
	if len(state) == 0 || string(state) == "null" {
		return nil
	}
	return state
}
