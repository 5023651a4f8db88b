package dativo

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// EncodeSchema returns base64 of the Arrow IPC schema message, the form schemas travel in (what
// pyarrow.Schema.serialize() gives and pyarrow.ipc.read_schema reads).
func EncodeSchema(schema *arrow.Schema) string {
	return base64.StdEncoding.EncodeToString(flight.SerializeSchema(schema, memory.DefaultAllocator))
}

// DecodeSchema is the inverse of [EncodeSchema].
func DecodeSchema(text string) (*arrow.Schema, error) {
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("schema is not base64: %w", err)
	}
	schema, err := flight.DeserializeSchema(raw, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("schema is not an Arrow IPC schema message: %w", err)
	}
	return schema, nil
}

// decodeStrict decodes a JSON object into v, refusing unknown keys; errors are ConfigErrors naming
// the key under prefix (e.g. "source.tables").
func decodeStrict(raw json.RawMessage, v any, prefix string) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		where := prefix
		if typeErr.Field != "" {
			where += "." + typeErr.Field
		}
		return ConfigError(fmt.Sprintf("%s must be %s, not a JSON %s", where,
			goTypeName(typeErr.Type.String()), typeErr.Value), "")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return ConfigError(fmt.Sprintf("%s has an unknown key %q", prefix, name),
			"Remove it, or check its spelling against the plugin's options (`dativo plugins info`).")
	default:
		return ConfigError(fmt.Sprintf("%s is not valid: %v", prefix, err), "")
	}
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	default:
		return "an object"
	}
}
