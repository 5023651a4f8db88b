// Command sequence is a Dativo reader: the numbers 1..rows, half of them labelled.
package main

import (
	"context"

	"github.com/apache/arrow-go/v18/arrow/array"
	dativo "github.com/dativo-io/dativo/sdk/go"
)

// options are the job's reader.options; the host checks them against the JSON Schema derived from
// this struct before the plugin starts.
type options struct {
	Rows      int64  `json:"rows" minimum:"0" doc:"How many numbers to read."`
	BatchSize int    `json:"batch_size,omitempty" minimum:"1" doc:"Rows per Arrow batch."`
	Label     string `json:"label,omitempty" enum:"even,odd" doc:"Which numbers get a label."`
}

var optionsOf = dativo.NewOptions(options{BatchSize: 100, Label: "even"}) // the defaults

// row is one row of the output: a column per field.
type row struct {
	N     int64   `json:"n"`
	Label *string `json:"label"` // a pointer: a nullable column
}

type sequence struct {
	dativo.BaseReader // Check, Close and a one-split Plan
	opts              options
	job               string
	counters          *dativo.Counters // shown in the run report under counters.reader
}

func (s *sequence) Info() dativo.Info {
	return dativo.Info{Name: "sequence", Version: "1.0.0", ConfigSchema: optionsOf.Schema()}
}

func (s *sequence) Configure(_ context.Context, cfg dativo.Config) (err error) {
	s.job, s.counters = cfg.Context.Job, cfg.Counters
	s.opts, err = optionsOf.Decode(cfg) // a bad key or value is a ConfigError naming it
	return err
}

func (s *sequence) Discover(context.Context) ([]dativo.Dataset, error) {
	return []dativo.Dataset{{Name: s.job, Schema: dativo.MustSchemaOf[row]()}}, nil
}

func (s *sequence) Read(ctx context.Context, _ dativo.Split) (array.RecordReader, error) {
	return dativo.StreamRows(ctx, func(ctx context.Context, rows *dativo.RowWriter[row]) error {
		var labelled int64
		defer func() { s.counters.Add("labelled", labelled) }() // once per split, not per row
		for n := int64(1); n <= s.opts.Rows; n++ {
			r := row{N: n}
			if (n%2 == 0) == (s.opts.Label == "even") {
				r.Label = &s.opts.Label
				labelled++
			}
			if err := rows.Append(r); err != nil { // the host went away
				return err
			}
		}
		return nil
	}, dativo.BatchRows(s.opts.BatchSize))
}

func main() { dativo.Serve(&sequence{}) }
