/*
 * dativo_plugin.h: the C ABI of Dativo's native (C / C++) reader and writer plugins.
 *
 * A plugin is a shared library (.so / .dylib) that exports plain C functions. Dativo loads it with
 * dlopen, checks its ABI version, and drives it exactly like a Python dativo.api.Reader / Writer:
 * the engine, parallel splits, fallback, reports and the atomic commit need nothing else. Data
 * crosses the boundary as Apache Arrow through the Arrow C data interface (ArrowSchema, ArrowArray,
 * ArrowArrayStream), so a million values are one buffer handed over without a copy. Everything
 * else (configuration, dataset descriptions, split descriptors, written files) is UTF-8 JSON.
 *
 * The design follows ADBC (Arrow Database Connectivity): opaque handles, a status code returned by
 * every call, an error struct with its own release callback, and Arrow's ownership rules.
 *
 * ---------------------------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------------------------------
 * A job names the library:
 *
 *     source:
 *       reader:
 *         type: custom
 *         implementation: {lib: ./build/libfoo.so}            # relative to the job file's folder
 *         # implementation: {lib: ./libfoo.so, symbol_prefix: "orders_"}
 *
 * Every function below is looked up as <symbol_prefix><name>; the default prefix is "dativo_", so
 * reader_new is the symbol "dativo_reader_new". A library may hold several plugins under different
 * prefixes, and a reader and a writer under the same prefix. With the default prefix, the
 * prototypes at the end of this header let the compiler check your signatures and give them C
 * linkage even in C++.
 *
 * The loader first calls <prefix>abi_version() and refuses a library whose version is not one it
 * supports, naming both versions. It then checks that every *required* function of the role it
 * loads (reader or writer) is exported; *optional* ones may be missing and get a default.
 *
 * ---------------------------------------------------------------------------------------------
 * Conventions (the same for every function)
 * ---------------------------------------------------------------------------------------------
 * Status.   Every fallible call returns a DativoStatusCode; DATIVO_STATUS_OK (0) is success.
 *           A plugin never aborts, exits, or lets a C++ exception cross the boundary: it returns a
 *           code and fills the DativoError. The code decides what Dativo tells the user (see
 *           DativoStatusCode); the message is shown to the user verbatim.
 *
 * Errors.   The host passes a zeroed struct DativoError. On failure the plugin may set `message`
 *           (UTF-8, NUL-terminated, allocated however it likes), `vendor_code` and `release`;
 *           the host copies the message and calls `release` exactly once. dativo_error_set() below
 *           does all of that for you. On success the plugin leaves the struct untouched.
 *
 * JSON in.  Arguments named *_json are NUL-terminated UTF-8 JSON texts owned by the host and valid
 *           only during the call: copy what you keep.
 *
 * JSON out. Results of type struct DativoString are zeroed by the host; on success the plugin
 *           fills them and the host calls `release` exactly once after copying the text.
 *           dativo_string_set() below does this for you. On failure leave them untouched.
 *
 * Arrow.    Out-parameters of type ArrowSchema / ArrowArrayStream are zeroed by the host; on success
 *           the plugin fills them and ownership passes to the host, which calls `release` exactly
 *           once. On failure the plugin leaves them released (release == NULL).
 *           An ArrowArrayStream handed *to* a writer is moved to the plugin: before returning
 *           (success or failure) the plugin has either released it or moved it elsewhere and set
 *           its `release` to NULL. A `const struct ArrowSchema*` argument is borrowed.
 *
 * Handles.  DativoReader / DativoWriter are opaque: the plugin defines the structs. The host calls
 *           <prefix>reader_release / <prefix>writer_release exactly once per handle, and never
 *           uses it afterwards.
 *
 * Threads.  The host calls reader_open and writer_write from several threads at once on the same
 *           handle (one split each); make them thread-safe (usually: only read the shared
 *           configuration). No other call on a handle overlaps with anything on that handle.
 *           An ArrowArrayStream is used by one thread at a time, though not always the thread that
 *           opened it.
 *
 * Lifetime. A stream returned by reader_open must stay valid until its own release, even if the
 *           reader handle is released first (keep what the stream needs by shared ownership).
 *
 * ---------------------------------------------------------------------------------------------
 * JSON shapes
 * ---------------------------------------------------------------------------------------------
 * config_json (reader_new / writer_new):
 *     {"options":  {...},   the job's reader.options / writer.options, unvalidated: validate them
 *      "settings": {...},   the connector keys of the job's source / target section (path, dsn ...)
 *      "context":  {"job": "orders", "run_id": "…", "plugin": "./build/libfoo.so",
 *                   "parallelism": 4, "cursor": "updated_at" | null, "work_dir": "/abs/.dativo"}}
 *     Reject unknown or invalid keys with DATIVO_STATUS_INVALID_ARGUMENT and a message naming the
 *     key ("option 'colums' is unknown; did you mean 'columns'?"): the job then stops with a
 *     configuration error instead of running with a silent default.
 *
 * dataset_json:   {"name": "public.orders", "primary_key": ["id"], "cursor_candidates": ["ts"]}
 * datasets_json:  a JSON array of dataset_json objects (reader_discover's result).
 * split_json:     {"dataset": "public.orders", "id": "3", "params": {...}}; params is yours.
 * splits_json:    a JSON array of {"id": "3", "params": {...}} (reader_plan's result); ids unique.
 * state_json:     the dataset's incremental state of the last committed run, or null.
 * written_json:   {"files": ["/path/part-0.dat"], "rows": 10, "bytes": 1234, "extra": {...}}
 *                 (writer_write's result); commit and abort get a JSON array of those, each with
 *                 "dataset" and "split" (the split's id) added.
 * commit_json:    {"commit_id": "42" | null, "rows": 10, "no_op": false} (writer_commit's result).
 */
#ifndef DATIVO_PLUGIN_H
#define DATIVO_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================= */
/* Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html), verbatim.   */
/* Guarded by the standard macros, so this header coexists with arrow/c/abi.h and nanoarrow.     */
/* ============================================================================================= */

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
  /* Array type description */
  const char* format;
  const char* name;
  const char* metadata;
  int64_t flags;
  int64_t n_children;
  struct ArrowSchema** children;
  struct ArrowSchema* dictionary;

  /* Release callback */
  void (*release)(struct ArrowSchema*);
  /* Opaque producer-specific data */
  void* private_data;
};

struct ArrowArray {
  /* Array data description */
  int64_t length;
  int64_t null_count;
  int64_t offset;
  int64_t n_buffers;
  int64_t n_children;
  const void** buffers;
  struct ArrowArray** children;
  struct ArrowArray* dictionary;

  /* Release callback */
  void (*release)(struct ArrowArray*);
  /* Opaque producer-specific data */
  void* private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

#ifndef ARROW_C_STREAM_INTERFACE
#define ARROW_C_STREAM_INTERFACE

struct ArrowArrayStream {
  /* Callback to get the stream type (the same for all arrays in the stream).
   * Return value: 0 if successful, an `errno`-compatible error code otherwise.
   * If successful, the ArrowSchema must be released independently from the stream. */
  int (*get_schema)(struct ArrowArrayStream*, struct ArrowSchema* out);

  /* Callback to get the next array (if no error and the array is released, the stream has ended).
   * Return value: 0 if successful, an `errno`-compatible error code otherwise.
   * If successful, the ArrowArray must be released independently from the stream. */
  int (*get_next)(struct ArrowArrayStream*, struct ArrowArray* out);

  /* Callback to get optional detailed error information. This must only be called if the last
   * stream operation failed with a non-0 return code.
   * Return value: pointer to a null-terminated character array describing the last error, or NULL
   * if no description is available. The returned pointer is only valid until the next operation
   * on this stream (including release). */
  const char* (*get_last_error)(struct ArrowArrayStream*);

  /* Release callback: release the stream's own resources. Note that arrays returned by
   * `get_next` must be individually released. */
  void (*release)(struct ArrowArrayStream*);

  /* Opaque producer-specific data */
  void* private_data;
};

#endif /* ARROW_C_STREAM_INTERFACE */

/* ============================================================================================= */
/* Dativo plugin ABI                                                                              */
/* ============================================================================================= */

/* The ABI version this header describes. It changes only when a change breaks existing plugins;
 * functions added later are optional, so older plugins keep loading. */
#define DATIVO_PLUGIN_ABI_VERSION 1

/* Mark exported functions (default visibility even when compiling with -fvisibility=hidden). */
#if defined(_WIN32)
#define DATIVO_EXPORT __declspec(dllexport)
#else
#define DATIVO_EXPORT __attribute__((visibility("default")))
#endif

/* What a call returned. The code decides how Dativo reports a failure:
 *   INVALID_ARGUMENT, NOT_FOUND  from *_new or *_check  → configuration error (exit code 2, no
 *                                                          fallback: the user's to fix);
 *   IO, UNAUTHENTICATED          from *_check            → connection failed;
 *   COMMIT_FAILED                from writer_commit      → commit failed, nothing was published;
 *   any other code               from writer_commit      → commit state unknown;
 *   anything else                                        → the plugin failed (with
 *                                                          `fallback: default`, the built-in runs). */
typedef int32_t DativoStatusCode;

#define DATIVO_STATUS_OK 0
#define DATIVO_STATUS_UNKNOWN 1
#define DATIVO_STATUS_NOT_IMPLEMENTED 2
#define DATIVO_STATUS_INVALID_ARGUMENT 3 /* bad configuration, option or argument */
#define DATIVO_STATUS_NOT_FOUND 4        /* a file, table or dataset does not exist */
#define DATIVO_STATUS_IO 5               /* reading or writing failed; a server is unreachable */
#define DATIVO_STATUS_INVALID_DATA 6     /* the source data is malformed (name the line/row) */
#define DATIVO_STATUS_UNAUTHENTICATED 7  /* credentials refused */
#define DATIVO_STATUS_COMMIT_FAILED 8    /* commit refused and nothing published: retry is safe */
#define DATIVO_STATUS_INTERNAL 9         /* a bug in the plugin */

/* Detailed error information, filled by the plugin when a call fails (see "Errors" above). */
struct DativoError {
  /* What went wrong, for a person: UTF-8, NUL-terminated; NULL if no message. Name what the user
   * can act on (the option, the file and line, the table). */
  char* message;
  /* A plugin-specific code (errno, a server's error number …) shown beside the message; 0: none. */
  int32_t vendor_code;
  /* Frees `message` and `private_data`; called by the host exactly once. NULL: nothing to free. */
  void (*release)(struct DativoError* error);
  /* Opaque plugin-specific data. */
  void* private_data;
};

/* A JSON text produced by the plugin (see "JSON out" above). */
struct DativoString {
  /* UTF-8, NUL-terminated. */
  const char* data;
  /* Length of `data` in bytes, without the terminating NUL. */
  int64_t size;
  /* Frees the text; called by the host exactly once. */
  void (*release)(struct DativoString* string);
  /* Opaque plugin-specific data. */
  void* private_data;
};

/* Opaque handles: define these structs in your plugin, e.g. `struct DativoReader { ... };`. */
typedef struct DativoReader DativoReader;
typedef struct DativoWriter DativoWriter;

/* --- Identity ------------------------------------------------------------------------------- */

/* REQUIRED. Return DATIVO_PLUGIN_ABI_VERSION as the plugin saw it when it was compiled:
 *     DATIVO_EXPORT int32_t dativo_abi_version(void) { return DATIVO_PLUGIN_ABI_VERSION; }
 * The loader calls this first and refuses a version it does not support. */
typedef int32_t (*DativoAbiVersionFn)(void);

/* OPTIONAL. A static JSON object describing the plugin, shown in run reports:
 *     {"name": "fixedwidth", "version": "1.0.0", "language": "c++", "description": "…"}
 * The returned pointer must stay valid while the library is loaded. Without it the version is
 * "0.0.0" and the language "c". */
typedef const char* (*DativoPluginInfoFn)(void);

/* OPTIONAL (added to ABI 1 later: a Dativo that does not know it never calls it). The JSON Schema of
 * the options of `role` ("reader" or "writer"), i.e. of what the job's reader.options or
 * writer.options may hold, as a static JSON object:
 *     {"type": "object", "additionalProperties": false,
 *      "properties": {"batch_size": {"type": "integer", "minimum": 1, "description": "…"}}}
 * Dativo checks a job's options against it before reader_new / writer_new is called, with the
 * messages it gives for Python plugins (the YAML line, "did you mean" for a misspelt key, the key of
 * a value of the wrong type), and `dativo plugins info` shows it. Checked are type, properties,
 * required, additionalProperties: false, enum, const, minimum / maximum (and their exclusive forms),
 * items, anyOf / oneOf and local $ref; other keywords (default, description …) document. It covers
 * `options` only: keep checking the settings, and the options too (an older Dativo does not ask).
 * The returned pointer must stay valid while the library is loaded; NULL: that role's options are
 * not declared (anything goes, and `dativo plugins info` says so). */
typedef const char* (*DativoPluginConfigSchemaFn)(const char* role);

/* --- Reader ----------------------------------------------------------------------------------- */

/* REQUIRED. Create a reader from config_json (see "JSON shapes"): validate the options and settings
 * here, so a bad configuration stops the job before any data moves. On success store a new handle
 * in *out. Cheap: do not connect here (that is check's job). */
typedef DativoStatusCode (*DativoReaderNewFn)(const char* config_json, DativoReader** out,
                                              struct DativoError* error);

/* OPTIONAL. Verify the source is reachable and usable (files exist, server answers, credentials
 * work). Default: nothing to check. */
typedef DativoStatusCode (*DativoReaderCheckFn)(DativoReader* reader, struct DativoError* error);

/* OPTIONAL. List the datasets this reader produces, as datasets_json. Default: one dataset named
 * after the job. */
typedef DativoStatusCode (*DativoReaderDiscoverFn)(DativoReader* reader,
                                                   struct DativoString* out_datasets_json,
                                                   struct DativoError* error);

/* OPTIONAL. The Arrow schema of one dataset (a struct: one child per column; a child's
 * ARROW_FLAG_NULLABLE says whether the column may hold nulls). Called once per dataset that
 * discover listed (or with the job's name when discover is not exported). Every batch of the
 * dataset must have exactly this schema. Default: the first batch of each split decides. */
typedef DativoStatusCode (*DativoReaderSchemaFn)(DativoReader* reader, const char* dataset,
                                                 struct ArrowSchema* out, struct DativoError* error);

/* OPTIONAL. Divide one dataset into independent splits (splits_json), e.g. byte ranges of files or
 * key ranges of a table. context.parallelism in the config says how many run at once; planning
 * that many (or a few more) keeps every thread busy. state_json lets an incremental reader skip
 * what was already read (Dativo also filters rows at or below the committed cursor itself).
 * Default: one split, {"id": "0", "params": {}}. */
typedef DativoStatusCode (*DativoReaderPlanFn)(DativoReader* reader, const char* dataset_json,
                                               const char* state_json,
                                               struct DativoString* out_splits_json,
                                               struct DativoError* error);

/* REQUIRED. Open one split (split_json) as a stream of record batches: each ArrowArray is a struct
 * array whose children are the columns (the layout of a record batch). Stream batch by batch
 * (memory must not grow with the data), and report bad data from get_next with an errno code and
 * get_last_error naming the place ("orders.txt line 17, column 'amount': 'x1' is not a number").
 * Called from several threads at once (see "Threads"). */
typedef DativoStatusCode (*DativoReaderOpenFn)(DativoReader* reader, const char* split_json,
                                               struct ArrowArrayStream* out,
                                               struct DativoError* error);

/* REQUIRED. Free the reader. Streams it opened may still be alive (see "Lifetime"). */
typedef void (*DativoReaderReleaseFn)(DativoReader* reader);

/* --- Writer ----------------------------------------------------------------------------------- */

/* REQUIRED. Create a writer from config_json; validate options and settings as reader_new does.
 * context.run_id identifies this run: stage files under it. */
typedef DativoStatusCode (*DativoWriterNewFn)(const char* config_json, DativoWriter** out,
                                              struct DativoError* error);

/* OPTIONAL. Verify the target is reachable and writable. */
typedef DativoStatusCode (*DativoWriterCheckFn)(DativoWriter* writer, struct DativoError* error);

/* OPTIONAL. The incremental state committed with the last commit to dataset_json's target, or the
 * JSON text null. Default: null (no incremental state kept). */
typedef DativoStatusCode (*DativoWriterStateFn)(DativoWriter* writer, const char* dataset_json,
                                                struct DativoString* out_state_json,
                                                struct DativoError* error);

/* OPTIONAL. Create or evolve the target before any split is written. `schema` is borrowed; `mode`
 * is "append", "overwrite" or "merge". */
typedef DativoStatusCode (*DativoWriterPrepareFn)(DativoWriter* writer, const char* dataset_json,
                                                  const struct ArrowSchema* schema,
                                                  const char* mode, struct DativoError* error);

/* REQUIRED. Write one split's stream into files that nobody can see yet, and describe them
 * (written_json). Takes ownership of `stream` (see "Arrow"). If the stream's get_next fails, stop
 * and return DATIVO_STATUS_IO with its get_last_error text: Dativo then blames the reader.
 * Called from several threads at once (see "Threads"). */
typedef DativoStatusCode (*DativoWriterWriteFn)(DativoWriter* writer, const char* split_json,
                                                struct ArrowArrayStream* stream,
                                                struct DativoString* out_written_json,
                                                struct DativoError* error);

/* REQUIRED. Publish every written file (a JSON array of written_json) and state_json in one atomic
 * step, and describe it (commit_json). Committing a run_id that was already committed must publish
 * nothing and return {"no_op": true}. Return DATIVO_STATUS_COMMIT_FAILED only when you know that
 * nothing was published; any other failure means "state unknown" to the user. */
typedef DativoStatusCode (*DativoWriterCommitFn)(DativoWriter* writer, const char* dataset_json,
                                                 const char* written_json, const char* state_json,
                                                 const char* run_id,
                                                 struct DativoString* out_commit_json,
                                                 struct DativoError* error);

/* OPTIONAL. Delete files that writer_write produced and that will never be committed (a JSON array
 * of written_json). Default: nothing is deleted. */
typedef DativoStatusCode (*DativoWriterAbortFn)(DativoWriter* writer, const char* written_json,
                                                struct DativoError* error);

/* REQUIRED. Free the writer. */
typedef void (*DativoWriterReleaseFn)(DativoWriter* writer);

/* --- Prototypes for the default prefix "dativo_" (define DATIVO_PLUGIN_NO_PROTOTYPES to omit) -- */

#ifndef DATIVO_PLUGIN_NO_PROTOTYPES
DATIVO_EXPORT int32_t dativo_abi_version(void);
DATIVO_EXPORT const char* dativo_plugin_info(void);
DATIVO_EXPORT const char* dativo_plugin_config_schema(const char* role);
DATIVO_EXPORT DativoStatusCode dativo_reader_new(const char* config_json, DativoReader** out,
                                                 struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_reader_check(DativoReader* reader, struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_reader_discover(DativoReader* reader,
                                                      struct DativoString* out_datasets_json,
                                                      struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_reader_schema(DativoReader* reader, const char* dataset,
                                                    struct ArrowSchema* out,
                                                    struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_reader_plan(DativoReader* reader, const char* dataset_json,
                                                  const char* state_json,
                                                  struct DativoString* out_splits_json,
                                                  struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_reader_open(DativoReader* reader, const char* split_json,
                                                  struct ArrowArrayStream* out,
                                                  struct DativoError* error);
DATIVO_EXPORT void dativo_reader_release(DativoReader* reader);
DATIVO_EXPORT DativoStatusCode dativo_writer_new(const char* config_json, DativoWriter** out,
                                                 struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_check(DativoWriter* writer, struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_state(DativoWriter* writer, const char* dataset_json,
                                                   struct DativoString* out_state_json,
                                                   struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_prepare(DativoWriter* writer,
                                                     const char* dataset_json,
                                                     const struct ArrowSchema* schema,
                                                     const char* mode, struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_write(DativoWriter* writer, const char* split_json,
                                                   struct ArrowArrayStream* stream,
                                                   struct DativoString* out_written_json,
                                                   struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_commit(DativoWriter* writer,
                                                    const char* dataset_json,
                                                    const char* written_json,
                                                    const char* state_json, const char* run_id,
                                                    struct DativoString* out_commit_json,
                                                    struct DativoError* error);
DATIVO_EXPORT DativoStatusCode dativo_writer_abort(DativoWriter* writer, const char* written_json,
                                                   struct DativoError* error);
DATIVO_EXPORT void dativo_writer_release(DativoWriter* writer);
#endif /* DATIVO_PLUGIN_NO_PROTOTYPES */

/* ============================================================================================= */
/* Helpers for plugin authors (static inline; define DATIVO_PLUGIN_NO_HELPERS to leave them out)  */
/* ============================================================================================= */

#ifndef DATIVO_PLUGIN_NO_HELPERS

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void dativo_error_release_malloced(struct DativoError* error) {
  free(error->message);
  error->message = NULL;
  error->release = NULL;
}

/* Fill `error` with a printf-formatted message (replacing any earlier one) and return `code`:
 *     return dativo_error_set(error, DATIVO_STATUS_INVALID_ARGUMENT, "option '%s' is unknown", k); */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline DativoStatusCode dativo_error_set(struct DativoError* error, DativoStatusCode code,
                                                const char* format, ...) {
  if (error == NULL) return code;
  if (error->release != NULL) error->release(error);
  va_list args;
  va_start(args, format);
  int size = vsnprintf(NULL, 0, format, args);
  va_end(args);
  char* message = (char*)malloc(size < 0 ? 1 : (size_t)size + 1);
  if (message == NULL) return code;
  if (size < 0) {
    message[0] = '\0';
  } else {
    va_start(args, format);
    vsnprintf(message, (size_t)size + 1, format, args);
    va_end(args);
  }
  error->message = message;
  error->vendor_code = 0;
  error->release = dativo_error_release_malloced;
  error->private_data = NULL;
  return code;
}

static inline void dativo_string_release_malloced(struct DativoString* string) {
  free(string->private_data);
  string->data = NULL;
  string->private_data = NULL;
  string->release = NULL;
}

/* Fill `out` with a copy of `size` bytes of `data`. Returns DATIVO_STATUS_OK, or
 * DATIVO_STATUS_INTERNAL (with `error` set) if memory ran out. */
static inline DativoStatusCode dativo_string_set(struct DativoString* out, const char* data,
                                                 size_t size, struct DativoError* error) {
  char* copy = (char*)malloc(size + 1);
  if (copy == NULL) return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "out of memory");
  if (size > 0) memcpy(copy, data, size);
  copy[size] = '\0';
  out->data = copy;
  out->size = (int64_t)size;
  out->release = dativo_string_release_malloced;
  out->private_data = copy;
  return DATIVO_STATUS_OK;
}

#endif /* DATIVO_PLUGIN_NO_HELPERS */

#ifdef __cplusplus
}
#endif

#endif /* DATIVO_PLUGIN_H */
