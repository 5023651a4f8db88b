// Command go_parquet_writer is a Dativo writer plugin in Go: each split's stream becomes zstd Parquet
// files (arrow-go pqarrow) in a staging folder, and the commit publishes a run's files atomically as one
// folder of a Parquet dataset, with one rename.
//
// The layout is the built-in parquet writer's (src/dativo/writers/parquet.py), so both can write the
// same target and dativo.writers.parquet.read_committed reads what this one wrote:
//
//	out/orders/
//	  000001-<run id>/part-0-00000.parquet   one folder per committed run
//	  000001-<run id>/_dativo_commit.json    the run's record: job, rows, files, schema, state
//	  _dativo/staging/<run id>/              files written but not yet committed
//
// Readers that list the folder (pyarrow, DuckDB, Spark) skip names starting with "_", so staged files and
// the records are invisible to them. It writes local folders in mode append; anything else is a
// PluginFailed, on which the host can fall back to the built-in writer (fallback: default).
package main

import dativo "github.com/dativo-io/dativo/sdk/go"

func main() { dativo.Serve(&writer{}) }
