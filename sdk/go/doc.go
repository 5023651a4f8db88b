// Package dativo is the Go SDK for Dativo plugins that run in their own process.
//
// A plugin implements [Reader] or [Writer] (or both) and calls [Serve] from main. Serve speaks the
// Dativo out-of-process protocol (docs/plugins/protocol.md, version 1) over Arrow Flight: it listens on
// the Unix socket the host names in $DATIVO_FLIGHT_SOCKET (the only place the host connects to), prints
// the handshake line, answers the host's actions (spec, configure, check, discover, plan, prepare,
// state, commit, abort, close, shutdown), streams a split's record batches for DoGet and hands a DoPut
// stream to [Writer.Write].
//
// Errors returned by a plugin travel to the host as a DATIVO-ERROR line; build them with
// [ConfigError], [ConnectionFailed], [PluginFailed], [SchemaMismatch], [CommitFailed] or
// [CommitStateUnknown] so the host raises the matching dativo.errors class. Any other error, and any
// panic, becomes PluginFailed.
//
// Rows and options can be Go structs: [SchemaOf] derives a dataset's Arrow schema from a struct type,
// [StreamRows] and [RowWriter] turn values of it into record batches, and [NewOptions] derives the JSON
// Schema of the options (which the host checks a job against) from an options struct and decodes them.
//
// What a plugin met (invalid values, skipped records) it counts with [Config].Counters ([Counters.Add]);
// the SDK sends the counts in its answer to close, and the host shows them in the run report.
//
// The host may run several splits at once: Read and Write are called concurrently, one goroutine per
// Flight call, and must be safe for that.
package dativo
