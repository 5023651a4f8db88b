package dativo

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// Options is a plugin's options as a Go struct T: the JSON Schema that [Info] publishes, derived from
// T, and a Decode that checks the job's options against it.
//
//	type options struct {
//		Rows      int64  `json:"rows" doc:"How many numbers to read."`
//		BatchSize int64  `json:"batch_size,omitempty" minimum:"1" doc:"Rows per batch."`
//		Order     string `json:"order,omitempty" enum:"up,down"`
//	}
//
//	var optionsOf = dativo.NewOptions(options{BatchSize: 100, Order: "up"}) // the defaults
//
//	func (s *sequence) Info() dativo.Info {
//		return dativo.Info{Name: "sequence", Version: "1.0.0", ConfigSchema: optionsOf.Schema()}
//	}
//
//	func (s *sequence) Configure(_ context.Context, cfg dativo.Config) (err error) {
//		s.opts, err = optionsOf.Decode(cfg)
//		return err
//	}
//
// The schema: an object with one property per exported field, named by its json tag (else the field's
// name), additionalProperties false; a field is required unless its json tag says omitempty (or
// omitzero); `doc:"…"` is its description, `enum:"a,b"` its allowed values, `minimum:"1"` and
// `maximum:"9"` its bounds; an optional field's value in the defaults is its default. Field types:
// bool (boolean), integers (integer, with the bounds of the type), floats (number), string,
// time.Time (an RFC 3339 string), slices and arrays (array), maps with string keys and structs
// (object), pointers (the pointee's type, or null), and any, json.RawMessage or a type with its own
// UnmarshalJSON (anything).
//
// The host checks the job's options against this schema before it starts the plugin, with the messages
// of a Python plugin (the YAML line, "did you mean" for a misspelt key); Decode checks them again.
type Options[T any] struct {
	defaults T
	schema   map[string]any
}

// NewOptions returns the Options of struct type T, with defaults as the value of every key the job
// leaves out. It panics if T is not a struct or a tag cannot be read (a mistake in the plugin, found
// when it starts).
func NewOptions[T any](defaults T) *Options[T] {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("dativo.NewOptions: the options must be a struct, not %s", t))
	}
	schema, err := schemaOf(t, reflect.ValueOf(defaults), map[reflect.Type]bool{})
	if err != nil {
		panic("dativo.NewOptions: " + err.Error())
	}
	return &Options[T]{defaults: defaults, schema: schema}
}

// Schema returns the JSON Schema of the options (a new map each time), for [Info].ConfigSchema.
func (o *Options[T]) Schema() map[string]any { return cloneJSON(o.schema).(map[string]any) }

// Decode returns the job's options (cfg.Options) decoded into a copy of the defaults. A key that T does
// not have, a value of the wrong type, a missing required key, a value outside its enum or bounds is a
// [ConfigError] naming the key.
func (o *Options[T]) Decode(cfg Config) (T, error) {
	value := deepCopy(reflect.ValueOf(o.defaults)).Interface().(T)
	prefix := string(cfg.Role) + ".options"
	raw := bytes.TrimSpace(cfg.Options)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	if err := decodeStrict(raw, &value, prefix); err != nil {
		return value, err
	}
	var document any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&document); err != nil {
		return value, ConfigError(fmt.Sprintf("%s is not valid JSON: %v", prefix, err), "")
	}
	if err := checkOptions(o.schema, document, prefix); err != nil {
		return value, err
	}
	return value, nil
}

// --- the schema of a Go type --------------------------------------------------------------------------------

var (
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	unmarshalerType   = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// schemaOf returns the JSON Schema of values of t; defaults (a value of t, or invalid) gives the defaults of
// a struct's optional fields. visiting guards against recursive types.
func schemaOf(t reflect.Type, defaults reflect.Value, visiting map[reflect.Type]bool) (map[string]any, error) {
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case t == rawMessageType || t.Kind() == reflect.Interface:
		return map[string]any{}, nil
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType):
		return map[string]any{}, nil
	case t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(textUnmarshalType):
		return map[string]any{"type": "string"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return map[string]any{"type": "integer", "minimum": -(int64(1) << (bits - 1)), "maximum": int64(1)<<(bits-1) - 1}, nil
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return map[string]any{"type": "integer", "minimum": 0, "maximum": uint64(1)<<t.Bits() - 1}, nil
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Pointer:
		inner, err := schemaOf(t.Elem(), reflect.Value{}, visiting)
		if kind, ok := inner["type"].(string); ok {
			inner["type"] = []any{kind, "null"}
		}
		return inner, err
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := schemaOf(t.Elem(), reflect.Value{}, visiting)
		return map[string]any{"type": "array", "items": items}, err
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: a map's keys must be strings", t)
		}
		values, err := schemaOf(t.Elem(), reflect.Value{}, visiting)
		return map[string]any{"type": "object", "additionalProperties": values}, err
	case reflect.Struct:
		if visiting[t] {
			return map[string]any{}, nil
		}
		visiting[t] = true
		defer delete(visiting, t)
		object := map[string]any{"type": "object", "properties": map[string]any{}, "additionalProperties": false}
		required := []any{}
		if err := addProperties(t, defaults, object, &required, visiting); err != nil {
			return nil, err
		}
		if len(required) > 0 {
			object["required"] = required
		}
		return object, nil
	}
	return nil, fmt.Errorf("%s cannot be decoded from JSON", t)
}

func addProperties(t reflect.Type, defaults reflect.Value, object map[string]any, required *[]any, visiting map[reflect.Type]bool) error {
	properties := object["properties"].(map[string]any)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, tagged := f.Tag.Lookup("json")
		name, flags, _ := strings.Cut(tag, ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		var fieldDefault reflect.Value
		if defaults.IsValid() {
			fieldDefault = defaults.Field(i)
		}
		if f.Anonymous && (!tagged || name == "") && f.Type.Kind() == reflect.Struct {
			if err := addProperties(f.Type, fieldDefault, object, required, visiting); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		property, err := schemaOf(f.Type, fieldDefault, visiting)
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		if err := constrain(property, f); err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		optional := slices.Contains(strings.Split(flags, ","), "omitempty") || slices.Contains(strings.Split(flags, ","), "omitzero")
		if !optional {
			*required = append(*required, name)
		} else if fieldDefault.IsValid() && !isNil(fieldDefault) {
			if value, err := toJSON(fieldDefault.Interface()); err == nil {
				property["default"] = value
			}
		}
		properties[name] = property
	}
	return nil
}

// constrain adds a field's doc, enum, minimum and maximum tags to its schema.
func constrain(property map[string]any, f reflect.StructField) error {
	if doc := f.Tag.Get("doc"); doc != "" {
		property["description"] = doc
	}
	for _, key := range []string{"minimum", "maximum"} {
		if text, ok := f.Tag.Lookup(key); ok {
			number, err := strconv.ParseFloat(text, 64)
			if err != nil {
				return fmt.Errorf("tag %s:%q is not a number", key, text)
			}
			if number == math.Trunc(number) && math.Abs(number) < 1<<53 {
				property[key] = int64(number)
			} else {
				property[key] = number
			}
		}
	}
	if text, ok := f.Tag.Lookup("enum"); ok {
		var values []any
		for _, item := range strings.Split(text, ",") {
			value, err := enumValue(strings.TrimSpace(item), property["type"])
			if err != nil {
				return fmt.Errorf("tag enum:%q: %w", text, err)
			}
			values = append(values, value)
		}
		property["enum"] = values
	}
	return nil
}

func enumValue(text string, kind any) (any, error) {
	switch kind {
	case "integer":
		return strconv.ParseInt(text, 10, 64)
	case "number":
		return strconv.ParseFloat(text, 64)
	case "boolean":
		return strconv.ParseBool(text)
	}
	return text, nil
}

func isNil(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// toJSON is value as the JSON types encoding/json decodes into any (numbers as json.Number).
func toJSON(value any) (any, error) {
	text, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var out any
	return out, dec.Decode(&out)
}

func cloneJSON(value any) any {
	switch v := value.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for key, item := range v {
			out[key] = cloneJSON(item)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = cloneJSON(item)
		}
		return out
	}
	return value
}

// deepCopy copies v so that decoding into the copy never writes into v's slices, maps or pointees.
func deepCopy(v reflect.Value) reflect.Value {
	out := reflect.New(v.Type()).Elem()
	out.Set(v)
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			pointee := reflect.New(v.Type().Elem())
			pointee.Elem().Set(deepCopy(v.Elem()))
			out.Set(pointee)
		}
	case reflect.Slice:
		if !v.IsNil() {
			items := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := 0; i < v.Len(); i++ {
				items.Index(i).Set(deepCopy(v.Index(i)))
			}
			out.Set(items)
		}
	case reflect.Map:
		if !v.IsNil() {
			entries := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				entries.SetMapIndex(it.Key(), deepCopy(it.Value()))
			}
			out.Set(entries)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if out.Field(i).CanSet() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
	}
	return out
}

// --- checking decoded JSON against the schema (what decodeStrict does not: required, enum, bounds) --------

func checkOptions(schema map[string]any, value any, where string) error {
	if value == nil {
		return nil
	}
	if allowed, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(allowed, func(a any) bool { return sameJSON(a, value) }) {
		names := make([]string, len(allowed))
		for i, a := range allowed {
			names[i] = fmt.Sprint(a)
		}
		return ConfigError(fmt.Sprintf("%s must be one of %s (got %v)", where, strings.Join(names, ", "), value), "")
	}
	if number, ok := value.(json.Number); ok {
		got, _ := number.Float64()
		if low, ok := toFloat(schema["minimum"]); ok && got < low {
			return ConfigError(fmt.Sprintf("%s must be at least %v (got %s)", where, schema["minimum"], number), "")
		}
		if high, ok := toFloat(schema["maximum"]); ok && got > high {
			return ConfigError(fmt.Sprintf("%s must be at most %v (got %s)", where, schema["maximum"], number), "")
		}
	}
	switch v := value.(type) {
	case map[string]any:
		properties, _ := schema["properties"].(map[string]any)
		required, _ := schema["required"].([]any)
		for _, name := range required {
			if _, ok := v[name.(string)]; !ok {
				return ConfigError(fmt.Sprintf("%s.%s is required", where, name), "")
			}
		}
		keys := make([]string, 0, len(v))
		for key := range v {
			keys = append(keys, key)
		}
		slices.Sort(keys)
		for _, key := range keys {
			child, ok := properties[key].(map[string]any)
			if !ok {
				child, _ = schema["additionalProperties"].(map[string]any)
			}
			if err := checkOptions(child, v[key], where+"."+key); err != nil {
				return err
			}
		}
	case []any:
		items, _ := schema["items"].(map[string]any)
		for i, item := range v {
			if err := checkOptions(items, item, fmt.Sprintf("%s[%d]", where, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func sameJSON(a, b any) bool {
	x, errX := toJSON(a)
	y, errY := toJSON(b)
	if errX != nil || errY != nil {
		return false
	}
	if n, ok := x.(json.Number); ok {
		if m, ok := y.(json.Number); ok {
			p, _ := n.Float64()
			q, _ := m.Float64()
			return p == q
		}
	}
	return reflect.DeepEqual(x, y)
}

func toFloat(value any) (float64, bool) {
	switch v := value.(type) {
	case int64:
		return float64(v), true
	case int:
		return float64(v), true
	case uint64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}
