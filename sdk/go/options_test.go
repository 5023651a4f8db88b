package dativo

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type connection struct {
	Host string `json:"host" doc:"The server."`
	Port uint16 `json:"port,omitempty"`
}

type Common struct {
	Verbose bool `json:"verbose,omitempty"`
}

type readerOptions struct {
	Table     string            `json:"table" doc:"The table to read."`
	BatchSize int               `json:"batch_size,omitempty" minimum:"1" maximum:"1000000"`
	Ratio     float64           `json:"ratio,omitempty" minimum:"0.5"`
	Units     string            `json:"units,omitempty" enum:"chars, bytes"`
	Level     int               `json:"level,omitempty" enum:"1,2,3"`
	Columns   []string          `json:"columns,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Since     *time.Time        `json:"since,omitempty"`
	Limit     *int64            `json:"limit,omitempty"`
	Server    connection        `json:"server,omitempty"`
	Extra     json.RawMessage   `json:"extra,omitempty"`
	Anything  any               `json:"anything,omitempty"`
	Small     int8              `json:"small,omitempty"`
	Ignored   string            `json:"-"`
	NoTag     string            `json:",omitempty"`
	internal  int
	Common
}

var readerDefaults = readerOptions{BatchSize: 100, Units: "chars", Columns: []string{"a", "b"}, Labels: map[string]string{"k": "v"}}

func TestOptionsSchemaFromAStruct(t *testing.T) {
	schema := NewOptions(readerDefaults).Schema()
	text, _ := json.Marshal(schema)
	var got map[string]any
	_ = json.Unmarshal(text, &got)
	if got["type"] != "object" || got["additionalProperties"] != false {
		t.Fatalf("top level %s", text)
	}
	if required, _ := json.Marshal(got["required"]); string(required) != `["table"]` {
		t.Errorf("required %s", required)
	}
	properties := got["properties"].(map[string]any)
	want := map[string]string{
		"table":      `{"description":"The table to read.","type":"string"}`,
		"batch_size": `{"default":100,"maximum":1000000,"minimum":1,"type":"integer"}`,
		"ratio":      `{"default":0,"minimum":0.5,"type":"number"}`,
		"units":      `{"default":"chars","enum":["chars","bytes"],"type":"string"}`,
		"level":      `{"default":0,"enum":[1,2,3],"type":"integer"}`,
		"columns":    `{"default":["a","b"],"items":{"type":"string"},"type":"array"}`,
		"labels":     `{"additionalProperties":{"type":"string"},"default":{"k":"v"},"type":"object"}`,
		"since":      `{"format":"date-time","type":["string","null"]}`,
		"limit":      `{"type":["integer","null"]}`,
		"server": `{"additionalProperties":false,"default":{"host":""},"properties":{"host":{"description":"The server.","type":"string"},` +
			`"port":{"default":0,"maximum":65535,"minimum":0,"type":"integer"}},"required":["host"],"type":"object"}`,
		"extra":    `{}`,
		"anything": `{}`,
		"small":    `{"default":0,"maximum":127,"minimum":-128,"type":"integer"}`,
		"NoTag":    `{"default":"","type":"string"}`,
		"verbose":  `{"default":false,"type":"boolean"}`,
	}
	for name, schema := range want {
		text, _ := json.Marshal(properties[name])
		if string(text) != schema {
			t.Errorf("%s: %s\n want %s", name, text, schema)
		}
	}
	if len(properties) != len(want) {
		t.Errorf("properties %v", properties)
	}
	schema["type"] = "changed"
	if NewOptions(readerDefaults).Schema()["type"] != "object" {
		t.Error("Schema returns a copy")
	}
}

func TestOptionsDecodeStartsFromTheDefaults(t *testing.T) {
	options := NewOptions(readerDefaults)
	got, err := options.Decode(Config{Role: RoleReader, Options: json.RawMessage(`{"table": "t", "columns": ["x"], "labels": {"a": "b"}, "limit": 5}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Table != "t" || got.BatchSize != 100 || got.Units != "chars" || got.Columns[0] != "x" || len(got.Columns) != 1 || *got.Limit != 5 {
		t.Fatalf("decoded %+v", got)
	}
	if readerDefaults.Columns[0] != "a" || len(readerDefaults.Labels) != 1 {
		t.Fatalf("decoding changed the defaults: %+v", readerDefaults)
	}
	if got, err := NewOptions(struct{}{}).Decode(Config{Role: RoleWriter}); err != nil {
		t.Fatalf("no options at all: %+v %v", got, err)
	}
}

func TestOptionsDecodeNamesTheBadKey(t *testing.T) {
	options := NewOptions(readerDefaults)
	for body, message := range map[string]string{
		`{}`:                                                     "reader.options.table is required",
		`{"table": "t", "batch_sise": 5}`:                        `reader.options has an unknown key "batch_sise"`,
		`{"table": 5}`:                                           "reader.options.table must be a string, not a JSON number",
		`{"table": "t", "batch_size": 0}`:                        "reader.options.batch_size must be at least 1 (got 0)",
		`{"table": "t", "batch_size": 1000001}`:                  "reader.options.batch_size must be at most 1000000 (got 1000001)",
		`{"table": "t", "ratio": 0.25}`:                          "reader.options.ratio must be at least 0.5 (got 0.25)",
		`{"table": "t", "units": "words"}`:                       "reader.options.units must be one of chars, bytes (got words)",
		`{"table": "t", "level": 4}`:                             "reader.options.level must be one of 1, 2, 3 (got 4)",
		`{"table": "t", "server": {}}`:                           "reader.options.server.host is required",
		`{"table": "t", "server": {"host": "h", "port": 70000}}`: "reader.options.server.port must be",
		`{"table": "t", "server": {"host": "h", "prot": 1}}`:     `reader.options has an unknown key "prot"`,
		`[1]`: "reader.options must be an object, not a JSON array",
	} {
		_, err := options.Decode(Config{Role: RoleReader, Options: json.RawMessage(body)})
		var typed *Error
		if err == nil || !strings.Contains(err.Error(), message) {
			t.Errorf("%s: %v, want %q", body, err, message)
		} else if !asError(err, &typed) || typed.Kind != KindConfig {
			t.Errorf("%s: %v is not a ConfigError", body, err)
		}
	}
}

func asError(err error, target **Error) bool {
	typed, ok := err.(*Error)
	*target = typed
	return ok
}

func TestNewOptionsPanicsOnAMistake(t *testing.T) {
	for name, build := range map[string]func(){
		"not a struct": func() { NewOptions(3) },
		"bad minimum": func() {
			NewOptions(struct {
				N int `minimum:"one"`
			}{})
		},
		"bad enum": func() {
			NewOptions(struct {
				N int `enum:"1,two"`
			}{})
		},
		"a channel": func() { NewOptions(struct{ C chan int }{}) },
		"map key":   func() { NewOptions(struct{ M map[int]string }{}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			build()
		}()
	}
}

func TestOptionsOfARecursiveType(t *testing.T) {
	type node struct {
		Name     string  `json:"name"`
		Children []*node `json:"children,omitempty"`
	}
	schema := NewOptions(node{}).Schema()
	text, _ := json.Marshal(schema["properties"].(map[string]any)["children"])
	if string(text) != `{"items":{},"type":"array"}` {
		t.Fatalf("children %s", text)
	}
}
