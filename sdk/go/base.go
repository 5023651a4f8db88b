package dativo

import (
	"context"
	"encoding/json"

	"github.com/apache/arrow-go/v18/arrow"
)

// BasePlugin gives a plugin do-nothing Check and Close; embed it and override what you need.
type BasePlugin struct{}

// Check does nothing.
func (BasePlugin) Check(context.Context) error { return nil }

// Close does nothing.
func (BasePlugin) Close() error { return nil }

// BaseReader adds to [BasePlugin] a Plan that returns one split (id "0", no params).
type BaseReader struct{ BasePlugin }

// Plan returns a single split of the whole dataset.
func (BaseReader) Plan(_ context.Context, dataset Dataset, _ State) ([]Split, error) {
	return []Split{{Dataset: dataset.Name, ID: "0", Params: json.RawMessage("{}")}}, nil
}

// BaseWriter adds to [BasePlugin] a State that knows no state, and Prepare and Abort that do nothing.
type BaseWriter struct{ BasePlugin }

// State returns nil: no state was committed.
func (BaseWriter) State(context.Context, Dataset) (State, error) { return nil, nil }

// Prepare does nothing.
func (BaseWriter) Prepare(context.Context, Dataset, *arrow.Schema, Mode) error { return nil }

// Abort does nothing.
func (BaseWriter) Abort(context.Context, []Written) error { return nil }
