/* A small reader and writer in C that exercise every corner of the Dativo plugin ABI.
 *
 * tests/plugins/test_native.py compiles it several times with different macros:
 *   (none)                      a complete reader and writer
 *   -DTEST_ABI_VERSION=2        reports another ABI version
 *   -DOMIT_READER_OPEN          lacks a required function
 *   -DMINIMAL                   only the required reader functions (the loader's defaults do the rest)
 *   -DPREFIX=orders_            every symbol under another prefix
 *   -DDECLARES_OPTIONS          plugin_config_schema declares the reader's options (not the writer's)
 *   -DDECLARES_BAD_OPTIONS      plugin_config_schema returns a JSON array
 *
 * Options are read with strstr from the JSON Dativo passes (it writes `"key": value`):
 *   rows, batch_size, splits   what to produce (ids split*1000 + 1 .. rows; every third name is null)
 *   fail: "<stage>"            fail in new, check, check_io, discover, schema, plan, open, next, write,
 *                              commit, commit_unknown, abort; "silent_plan" fails without a message;
 *                              "write_untouched" fails without taking the stream (which the host releases)
 *   reject: "<text>"           refuse the configuration with this message
 *   vendor_code                attached to the failure
 * The writer stores each split as "<id>\t<name>" lines under settings.path/_staging/<run id>/ and commits
 * by renaming that folder to settings.path/<run id>.
 *
 * test_counts() reports how many of each owned object were created and released, so tests can prove
 * every release callback runs exactly once. */
#define _POSIX_C_SOURCE 200809L
#ifdef PREFIX
#define DATIVO_PLUGIN_NO_PROTOTYPES
#else
#define PREFIX dativo_
#endif
#include "dativo_plugin.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef TEST_ABI_VERSION
#define TEST_ABI_VERSION DATIVO_PLUGIN_ABI_VERSION
#endif

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(PREFIX, name)
#define UNUSED __attribute__((unused)) /* some variants leave parts out */

/* --- counters -------------------------------------------------------------------------------- */

enum { K_READER, K_WRITER, K_STREAM, K_ARRAY, K_SCHEMA, K_ERROR, K_STRING, K_COUNT };
static int64_t created[K_COUNT], released[K_COUNT];

static void made(int kind) { __atomic_add_fetch(&created[kind], 1, __ATOMIC_SEQ_CST); }
static void freed(int kind) { __atomic_add_fetch(&released[kind], 1, __ATOMIC_SEQ_CST); }

/* out[2k] = created, out[2k+1] = released, for reader, writer, stream, array, schema, error, string. */
DATIVO_EXPORT void test_counts(int64_t* out) {
  for (int k = 0; k < K_COUNT; ++k) {
    out[2 * k] = __atomic_load_n(&created[k], __ATOMIC_SEQ_CST);
    out[2 * k + 1] = __atomic_load_n(&released[k], __ATOMIC_SEQ_CST);
  }
}

/* --- helpers --------------------------------------------------------------------------------- */

static void error_release(struct DativoError* error) {
  free(error->message);
  error->message = NULL;
  error->release = NULL;
  freed(K_ERROR);
}

static DativoStatusCode set_error(struct DativoError* error, DativoStatusCode code, int32_t vendor,
                                  const char* message) {
  if (message != NULL) {
    error->message = strdup(message);
    error->vendor_code = vendor;
    error->release = error_release;
    made(K_ERROR);
  }
  return code;
}

static void string_release(struct DativoString* string) {
  free(string->private_data);
  string->release = NULL;
  freed(K_STRING);
}

UNUSED static DativoStatusCode set_string(struct DativoString* out, const char* text) {
  char* copy = strdup(text);
  out->data = copy;
  out->size = (int64_t)strlen(copy);
  out->release = string_release;
  out->private_data = copy;
  made(K_STRING);
  return DATIVO_STATUS_OK;
}

static long json_int(const char* json, const char* key, long fallback) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\": ", key);
  const char* at = json ? strstr(json, pattern) : NULL;
  return at ? strtol(at + strlen(pattern), NULL, 10) : fallback;
}

/* The string value of `key`, copied into out (no escapes are needed by the tests). */
static int json_str(const char* json, const char* key, char* out, size_t size) {
  char pattern[64];
  snprintf(pattern, sizeof pattern, "\"%s\": \"", key);
  const char* at = json ? strstr(json, pattern) : NULL;
  out[0] = '\0';
  if (at == NULL) return 0;
  at += strlen(pattern);
  const char* end = strchr(at, '"');
  size_t n = end ? (size_t)(end - at) : 0;
  if (n >= size) n = size - 1;
  memcpy(out, at, n);
  out[n] = '\0';
  return 1;
}

struct Settings {
  long rows, batch_size, splits, vendor;
  char fail[32];
  char path[512];
  char run_id[128];
};

static DativoStatusCode parse_settings(const char* json, struct Settings* s, struct DativoError* error) {
  char reject[256];
  s->rows = json_int(json, "rows", 5);
  s->batch_size = json_int(json, "batch_size", 2);
  s->splits = json_int(json, "splits", 1);
  s->vendor = json_int(json, "vendor_code", 0);
  json_str(json, "fail", s->fail, sizeof s->fail);
  json_str(json, "path", s->path, sizeof s->path);
  json_str(json, "run_id", s->run_id, sizeof s->run_id);
  if (json_str(json, "reject", reject, sizeof reject))
    return set_error(error, DATIVO_STATUS_INVALID_ARGUMENT, 0, reject);
  if (s->batch_size < 1) return set_error(error, DATIVO_STATUS_INVALID_ARGUMENT, 0, "option 'batch_size' must be >= 1");
  return DATIVO_STATUS_OK;
}

static int failing(const struct Settings* s, const char* stage) { return strcmp(s->fail, stage) == 0; }

/* --- identity -------------------------------------------------------------------------------- */

DATIVO_EXPORT int32_t FN(abi_version)(void) { return TEST_ABI_VERSION; }

#ifndef MINIMAL
DATIVO_EXPORT const char* FN(plugin_info)(void) {
  return "{\"name\": \"testplugin\", \"version\": \"2.5.0\", \"language\": \"c\"}";
}
#endif

#if defined(DECLARES_OPTIONS)
DATIVO_EXPORT const char* FN(plugin_config_schema)(const char* role) {
  if (strcmp(role, "reader") != 0) return NULL;
  return "{\"type\": \"object\", \"additionalProperties\": false, \"properties\": {"
         "\"rows\": {\"type\": \"integer\", \"minimum\": 0}, \"batch_size\": {\"type\": \"integer\", \"minimum\": 1}, "
         "\"splits\": {\"type\": \"integer\"}, \"fail\": {\"type\": \"string\"}, "
         "\"reject\": {\"type\": \"string\"}, \"vendor_code\": {\"type\": \"integer\"}}}";
}
#elif defined(DECLARES_BAD_OPTIONS)
DATIVO_EXPORT const char* FN(plugin_config_schema)(const char* role) { return role ? "[1, 2]" : NULL; }
#endif

/* --- Arrow: schema (id int64, name utf8) ---------------------------------------------------------- */

static void schema_release(struct ArrowSchema* schema) {
  for (int64_t i = 0; i < schema->n_children; ++i) {
    struct ArrowSchema* child = schema->children[i];
    if (child->release) child->release(child);
  }
  free(schema->private_data); /* the children and their pointer array */
  schema->release = NULL;
  freed(K_SCHEMA);
}

static void child_schema_release(struct ArrowSchema* schema) { schema->release = NULL; }

struct SchemaStorage {
  struct ArrowSchema children[2];
  struct ArrowSchema* pointers[2];
};

static void make_schema(struct ArrowSchema* out) {
  struct SchemaStorage* storage = calloc(1, sizeof *storage);
  const char* formats[2] = {"l", "u"};
  const char* names[2] = {"id", "name"};
  for (int i = 0; i < 2; ++i) {
    storage->children[i] = (struct ArrowSchema){.format = formats[i], .name = names[i],
                                                .flags = i ? ARROW_FLAG_NULLABLE : 0,
                                                .release = child_schema_release};
    storage->pointers[i] = &storage->children[i];
  }
  *out = (struct ArrowSchema){.format = "+s", .name = "", .n_children = 2, .children = storage->pointers,
                              .release = schema_release, .private_data = storage};
  made(K_SCHEMA);
}

/* --- Arrow: one batch as a struct array ------------------------------------------------------------ */

struct Column {
  struct ArrowArray array;
  const void* buffers[3];
  void* memory[3];
};

struct Batch {
  struct Column columns[2];
  struct ArrowArray* pointers[2];
  const void* buffers[1];
};

static void column_release(struct ArrowArray* array) {
  struct Column* column = (struct Column*)array; /* array is the first member */
  for (int i = 0; i < 3; ++i) free(column->memory[i]);
  array->release = NULL;
}

static void batch_release(struct ArrowArray* array) {
  struct Batch* batch = array->private_data;
  for (int i = 0; i < 2; ++i) {
    if (batch->columns[i].array.release) batch->columns[i].array.release(&batch->columns[i].array);
  }
  free(batch);
  array->release = NULL;
  freed(K_ARRAY);
}

static void make_batch(long first_id, long count, struct ArrowArray* out) {
  struct Batch* batch = calloc(1, sizeof *batch);
  int64_t* ids = malloc(sizeof(int64_t) * (size_t)(count ? count : 1));
  uint8_t* validity = calloc((size_t)count / 8 + 1, 1);
  int32_t* offsets = malloc(sizeof(int32_t) * (size_t)(count + 1));
  char* data = malloc((size_t)count * 24 + 1);
  int64_t nulls = 0;
  offsets[0] = 0;
  for (long i = 0; i < count; ++i) {
    const long id = first_id + i;
    ids[i] = id;
    int n = 0;
    if (id % 3 == 0) {
      ++nulls;
    } else {
      validity[i / 8] |= (uint8_t)(1u << (i % 8));
      n = sprintf(data + offsets[i], "n%ld", id);
    }
    offsets[i + 1] = offsets[i] + n;
  }
  struct Column* c0 = &batch->columns[0];
  c0->memory[0] = ids;
  c0->buffers[0] = NULL;
  c0->buffers[1] = ids;
  c0->array = (struct ArrowArray){.length = count, .n_buffers = 2, .buffers = c0->buffers,
                                  .release = column_release};
  struct Column* c1 = &batch->columns[1];
  c1->memory[0] = validity;
  c1->memory[1] = offsets;
  c1->memory[2] = data;
  c1->buffers[0] = validity;
  c1->buffers[1] = offsets;
  c1->buffers[2] = data;
  c1->array = (struct ArrowArray){.length = count, .null_count = nulls, .n_buffers = 3, .buffers = c1->buffers,
                                  .release = column_release};
  batch->pointers[0] = &c0->array;
  batch->pointers[1] = &c1->array;
  *out = (struct ArrowArray){.length = count, .n_buffers = 1, .buffers = batch->buffers, .n_children = 2,
                             .children = batch->pointers, .release = batch_release, .private_data = batch};
  made(K_ARRAY);
}

/* --- the reader ------------------------------------------------------------------------------------- */

struct DativoReader {
  struct Settings settings;
};

struct StreamState {
  struct Settings settings; /* a copy: the stream may outlive the reader */
  long next_id, last_id, batches;
  char error[128];
};

UNUSED static int stream_get_schema(struct ArrowArrayStream* stream, struct ArrowSchema* out) {
  (void)stream;
  make_schema(out);
  return 0;
}

UNUSED static int stream_get_next(struct ArrowArrayStream* stream, struct ArrowArray* out) {
  struct StreamState* state = stream->private_data;
  if (failing(&state->settings, "next") && state->batches == 1) {
    snprintf(state->error, sizeof state->error, "row %ld is corrupt", state->next_id);
    return EINVAL;
  }
  if (state->next_id > state->last_id) {
    out->release = NULL;
    return 0;
  }
  long count = state->last_id - state->next_id + 1;
  if (count > state->settings.batch_size) count = state->settings.batch_size;
  make_batch(state->next_id, count, out);
  state->next_id += count;
  state->batches++;
  return 0;
}

UNUSED static const char* stream_get_last_error(struct ArrowArrayStream* stream) {
  struct StreamState* state = stream->private_data;
  return state->error[0] ? state->error : NULL;
}

UNUSED static void stream_release(struct ArrowArrayStream* stream) {
  free(stream->private_data);
  stream->release = NULL;
  freed(K_STREAM);
}

DATIVO_EXPORT DativoStatusCode FN(reader_new)(const char* config_json, DativoReader** out,
                                              struct DativoError* error) {
  struct Settings settings;
  DativoStatusCode status = parse_settings(config_json, &settings, error);
  if (status != DATIVO_STATUS_OK) return status;
  if (failing(&settings, "new")) return set_error(error, DATIVO_STATUS_INTERNAL, 0, "cannot allocate the reader");
  DativoReader* reader = malloc(sizeof *reader);
  reader->settings = settings;
  *out = reader;
  made(K_READER);
  return DATIVO_STATUS_OK;
}

#ifndef OMIT_READER_OPEN
DATIVO_EXPORT DativoStatusCode FN(reader_open)(DativoReader* reader, const char* split_json,
                                               struct ArrowArrayStream* out, struct DativoError* error) {
  const struct Settings* s = &reader->settings;
  if (failing(s, "open")) return set_error(error, DATIVO_STATUS_IO, (int32_t)s->vendor, "the server closed the connection");
  struct StreamState* state = calloc(1, sizeof *state);
  state->settings = *s;
  const long split = json_int(split_json, "split", 0);
  state->next_id = split * 1000 + 1;
  state->last_id = split * 1000 + s->rows;
  *out = (struct ArrowArrayStream){.get_schema = stream_get_schema, .get_next = stream_get_next,
                                   .get_last_error = stream_get_last_error, .release = stream_release,
                                   .private_data = state};
  made(K_STREAM);
  return DATIVO_STATUS_OK;
}
#endif

DATIVO_EXPORT void FN(reader_release)(DativoReader* reader) {
  free(reader);
  freed(K_READER);
}

#ifndef MINIMAL
DATIVO_EXPORT DativoStatusCode FN(reader_check)(DativoReader* reader, struct DativoError* error) {
  if (failing(&reader->settings, "check"))
    return set_error(error, DATIVO_STATUS_NOT_FOUND, 0, "source.path 'nowhere.dat' matches no files");
  if (failing(&reader->settings, "check_io"))
    return set_error(error, DATIVO_STATUS_IO, 111, "connection refused by db.example:5432");
  return DATIVO_STATUS_OK;
}

DATIVO_EXPORT DativoStatusCode FN(reader_discover)(DativoReader* reader, struct DativoString* out,
                                                   struct DativoError* error) {
  if (failing(&reader->settings, "discover"))
    return set_error(error, DATIVO_STATUS_UNKNOWN, 0, "catalog unavailable");
  return set_string(out, "[{\"name\": \"things\", \"primary_key\": [\"id\"], \"cursor_candidates\": [\"id\"]}]");
}

DATIVO_EXPORT DativoStatusCode FN(reader_schema)(DativoReader* reader, const char* dataset,
                                                 struct ArrowSchema* out, struct DativoError* error) {
  if (failing(&reader->settings, "schema") || strcmp(dataset, "things") != 0)
    return set_error(error, DATIVO_STATUS_NOT_FOUND, 0, "no such dataset");
  make_schema(out);
  return DATIVO_STATUS_OK;
}

DATIVO_EXPORT DativoStatusCode FN(reader_plan)(DativoReader* reader, const char* dataset_json,
                                               const char* state_json, struct DativoString* out,
                                               struct DativoError* error) {
  (void)dataset_json;
  (void)state_json;
  if (failing(&reader->settings, "plan"))
    return set_error(error, DATIVO_STATUS_INVALID_DATA, (int32_t)reader->settings.vendor, "cannot plan: table is locked");
  if (failing(&reader->settings, "silent_plan")) return DATIVO_STATUS_INVALID_DATA;
  char text[4096] = "[";
  for (long i = 0; i < reader->settings.splits && i < 64; ++i) {
    char item[64];
    snprintf(item, sizeof item, "%s{\"id\": \"s%ld\", \"params\": {\"split\": %ld}}", i ? ", " : "", i, i);
    strcat(text, item);
  }
  strcat(text, "]");
  return set_string(out, text);
}
#endif

/* --- the writer ------------------------------------------------------------------------------------ */
#ifndef MINIMAL

struct DativoWriter {
  struct Settings settings;
};

static void join(char* out, size_t size, const char* a, const char* b, const char* c) {
  snprintf(out, size, "%s/%s%s%s", a, b, c[0] ? "/" : "", c);
}

static void make_dirs(const char* path) { /* mkdir -p */
  char partial[1024];
  snprintf(partial, sizeof partial, "%s", path);
  for (char* at = partial + 1; *at; ++at) {
    if (*at != '/') continue;
    *at = '\0';
    mkdir(partial, 0777);
    *at = '/';
  }
  mkdir(partial, 0777);
}

DATIVO_EXPORT DativoStatusCode FN(writer_new)(const char* config_json, DativoWriter** out,
                                              struct DativoError* error) {
  struct Settings settings;
  DativoStatusCode status = parse_settings(config_json, &settings, error);
  if (status != DATIVO_STATUS_OK) return status;
  if (!settings.path[0]) return set_error(error, DATIVO_STATUS_INVALID_ARGUMENT, 0, "target.path: required key is missing");
  DativoWriter* writer = malloc(sizeof *writer);
  writer->settings = settings;
  *out = writer;
  made(K_WRITER);
  return DATIVO_STATUS_OK;
}

DATIVO_EXPORT void FN(writer_release)(DativoWriter* writer) {
  free(writer);
  freed(K_WRITER);
}

DATIVO_EXPORT DativoStatusCode FN(writer_state)(DativoWriter* writer, const char* dataset_json,
                                                struct DativoString* out, struct DativoError* error) {
  (void)dataset_json;
  (void)error;
  char file[1024], text[4096] = "null";
  join(file, sizeof file, writer->settings.path, "_state.json", "");
  FILE* f = fopen(file, "r");
  if (f) {
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
  }
  return set_string(out, text);
}

DATIVO_EXPORT DativoStatusCode FN(writer_prepare)(DativoWriter* writer, const char* dataset_json,
                                                  const struct ArrowSchema* schema, const char* mode,
                                                  struct DativoError* error) {
  (void)writer;
  (void)dataset_json;
  if (strcmp(mode, "merge") == 0) return set_error(error, DATIVO_STATUS_NOT_IMPLEMENTED, 0, "mode merge is not supported");
  if (strcmp(schema->format, "+s") != 0 || schema->n_children != 2)
    return set_error(error, DATIVO_STATUS_INVALID_ARGUMENT, 0, "the test writer takes (int64, utf8) only");
  return DATIVO_STATUS_OK; /* borrowed: not released here */
}

/* Writes "<id>\t<name>" lines; the stream must be (id int64, name utf8). Takes ownership of `stream`. */
DATIVO_EXPORT DativoStatusCode FN(writer_write)(DativoWriter* writer, const char* split_json,
                                                struct ArrowArrayStream* stream, struct DativoString* out,
                                                struct DativoError* error) {
  const struct Settings* s = &writer->settings;
  if (failing(s, "write_untouched")) /* breaks the rule on purpose: the host must release it */
    return set_error(error, DATIVO_STATUS_IO, 0, "refused before reading");
  struct ArrowArrayStream owned = *stream; /* move it: from now on it is ours to release */
  stream->release = NULL;
  DativoStatusCode status = DATIVO_STATUS_OK;
  char dir[1024], file[1200], id[64], message[512] = "";
  FILE* f = NULL;
  long rows = 0;
  if (failing(s, "write")) {
    status = set_error(error, DATIVO_STATUS_IO, 0, "disk full");
    goto done;
  }
  json_str(split_json, "id", id, sizeof id);
  join(dir, sizeof dir, s->path, "_staging", s->run_id);
  make_dirs(dir);
  snprintf(file, sizeof file, "%s/%s.txt", dir, id);
  f = fopen(file, "w");
  if (f == NULL) {
    status = set_error(error, DATIVO_STATUS_IO, errno, "cannot create the staging file");
    goto done;
  }
  struct ArrowSchema schema;
  if (owned.get_schema(&owned, &schema) != 0) {
    status = set_error(error, DATIVO_STATUS_IO, 0, "cannot get the schema");
    goto done;
  }
  const int ok = schema.n_children == 2 && strcmp(schema.children[0]->format, "l") == 0 &&
                 strcmp(schema.children[1]->format, "u") == 0;
  schema.release(&schema);
  if (!ok) {
    status = set_error(error, DATIVO_STATUS_INVALID_ARGUMENT, 0, "the test writer takes (int64, utf8) only");
    goto done;
  }
  while (1) {
    struct ArrowArray batch;
    const int code = owned.get_next(&owned, &batch);
    if (code != 0) {
      const char* why = owned.get_last_error(&owned);
      snprintf(message, sizeof message, "reading the stream failed: %s", why ? why : "unknown error");
      status = set_error(error, DATIVO_STATUS_IO, code, message);
      goto done;
    }
    if (batch.release == NULL) break;
    const struct ArrowArray* ids = batch.children[0];
    const struct ArrowArray* names = batch.children[1];
    const int64_t* id_values = ids->buffers[1];
    const uint8_t* valid = names->buffers[0];
    const int32_t* offsets = names->buffers[1];
    const char* data = names->buffers[2];
    for (int64_t i = 0; i < batch.length; ++i) {
      const int64_t a = ids->offset + batch.offset + i, b = names->offset + batch.offset + i;
      if (valid && !(valid[b / 8] & (1 << (b % 8))))
        fprintf(f, "%lld\t\\N\n", (long long)id_values[a]);
      else
        fprintf(f, "%lld\t%.*s\n", (long long)id_values[a], (int)(offsets[b + 1] - offsets[b]), data + offsets[b]);
      ++rows;
    }
    batch.release(&batch);
  }
done:
  if (owned.release) owned.release(&owned);
  if (f) {
    const long size = ftell(f);
    fclose(f);
    if (status == DATIVO_STATUS_OK) {
      char text[2048];
      snprintf(text, sizeof text, "{\"files\": [\"%s\"], \"rows\": %ld, \"bytes\": %ld, \"extra\": {}}", file, rows, size);
      set_string(out, text);
    }
  }
  return status;
}

DATIVO_EXPORT DativoStatusCode FN(writer_commit)(DativoWriter* writer, const char* dataset_json,
                                                 const char* written_json, const char* state_json,
                                                 const char* run_id, struct DativoString* out,
                                                 struct DativoError* error) {
  (void)dataset_json;
  const struct Settings* s = &writer->settings;
  if (failing(s, "commit")) return set_error(error, DATIVO_STATUS_COMMIT_FAILED, 0, "the target is read-only");
  if (failing(s, "commit_unknown")) return set_error(error, DATIVO_STATUS_IO, 0, "timeout while renaming");
  char staged[1024], target[1024], state[1024], text[256];
  long rows = 0;
  for (const char* at = written_json; (at = strstr(at, "\"rows\": ")) != NULL; at += 8) rows += strtol(at + 8, NULL, 10);
  join(staged, sizeof staged, s->path, "_staging", run_id);
  join(target, sizeof target, s->path, run_id, "");
  struct stat info;
  if (stat(target, &info) == 0) {
    snprintf(text, sizeof text, "{\"commit_id\": \"%s\", \"rows\": 0, \"no_op\": true}", run_id);
    return set_string(out, text);
  }
  if (stat(staged, &info) != 0) make_dirs(staged); /* an empty run */
  if (rename(staged, target) != 0) return set_error(error, DATIVO_STATUS_COMMIT_FAILED, errno, "rename failed");
  join(state, sizeof state, s->path, "_state.json", "");
  FILE* f = fopen(state, "w");
  if (f) {
    fputs(state_json, f);
    fclose(f);
  }
  snprintf(text, sizeof text, "{\"commit_id\": \"%s\", \"rows\": %ld, \"no_op\": false}", run_id, rows);
  return set_string(out, text);
}

DATIVO_EXPORT DativoStatusCode FN(writer_abort)(DativoWriter* writer, const char* written_json,
                                                struct DativoError* error) {
  if (failing(&writer->settings, "abort")) return set_error(error, DATIVO_STATUS_IO, 0, "cannot delete");
  /* delete every file named in written_json: "files": ["a", "b"] */
  for (const char* at = written_json; (at = strstr(at, "\"files\": [")) != NULL;) {
    at += 10;
    while (*at == '"') {
      const char* end = strchr(at + 1, '"');
      char file[1024];
      snprintf(file, sizeof file, "%.*s", (int)(end - at - 1), at + 1);
      remove(file);
      at = end + 1;
      if (*at == ',') at += 2;
    }
  }
  return DATIVO_STATUS_OK;
}
#endif
