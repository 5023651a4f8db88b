// Command go_postgres is a Dativo reader plugin for PostgreSQL, written in Go: pgx reads each split in
// PostgreSQL's binary format and decodes it straight into Arrow builders. It produces the same Arrow
// schema and values as the built-in postgres reader, reads the same job keys, and splits tables by
// primary-key ranges over one exported snapshot.
//
// Run it through Dativo (implementation: go_postgres once its Python package is installed), or by hand
// with --listen grpc://127.0.0.1:0 to talk Flight to it.
package main

import dativo "github.com/dativo-io/dativo/sdk/go"

func main() { dativo.Serve(&reader{}) }
