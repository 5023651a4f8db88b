// fixedwidth.cpp: a Dativo reader for fixed-width text files (mainframe exports, bank statements,
// government data sets), in C++17 with no dependency but sdk/cpp/dativo_plugin.h.
//
// It implements the C ABI of dativo_plugin.h: the configuration arrives as JSON, Arrow data leaves
// through the Arrow C data interface. Arrays are built by hand (validity bitmaps, offsets, values);
// nothing here needs the Arrow C++ libraries.
//
//   plan:  each file is cut into byte ranges; a range owns every line that *starts* inside it, so
//          ranges are read in parallel and every line is read exactly once.
//   open:  a split streams its ranges batch by batch (batch_size rows), reading the file through a
//          1 MiB buffer: memory stays flat whatever the file size.
//   errors: a bad value stops the stream with a message naming the file, line, column and value.
//
// The options are documented in ../README.md.

#include "dativo_plugin.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

__extension__ typedef __int128 int128;  // GCC and Clang: decimal128 values are native 128-bit integers

constexpr const char* kInfo =
    R"({"name": "fixedwidth", "version": "1.0.0", "language": "c++", )"
    R"("description": "Fixed-width text files to Arrow, split by byte ranges."})";

// The JSON Schema of reader.options (plugin_config_schema): Dativo checks a job's options against it
// before reader_new. Every key may also be written in the source section, so none is required here;
// parse_config checks both places (and the options again, for a Dativo that does not read this).
constexpr const char* kOptionsSchema = R"({
  "type": "object",
  "description": "Options of the fixed-width reader; each may also be written in the source section (an option wins). path and columns are required in one of the two places.",
  "additionalProperties": false,
  "properties": {
    "path": {"type": ["string", "array"], "items": {"type": "string"},
             "description": "A file, a glob (data/*.txt) or a list of them; relative to the working directory."},
    "columns": {"type": "array", "items": {"$ref": "#/$defs/column"},
                "description": "The fields of a record, in order."},
    "dataset": {"type": "string", "description": "The dataset name (default: the job's name)."},
    "batch_size": {"type": "integer", "minimum": 1, "maximum": 16777216, "default": 65536,
                   "description": "Rows per Arrow batch."},
    "units": {"enum": ["chars", "bytes"], "default": "chars",
              "description": "What widths and starts count: UTF-8 characters or bytes."},
    "trim": {"enum": ["both", "right", "none"], "default": "both",
             "description": "Blanks removed from text fields (numbers are always trimmed)."},
    "null_values": {"type": "array", "items": {"type": "string"}, "default": [""],
                    "description": "Field values (after trimming) read as null."},
    "skip_lines": {"type": "integer", "minimum": 0, "maximum": 1048576, "default": 0,
                   "description": "Header lines at the top of every file."},
    "min_split_bytes": {"type": "integer", "minimum": 1, "default": 1048576,
                        "description": "No split is smaller than this."},
    "primary_key": {"type": ["string", "array"], "items": {"type": "string"},
                    "description": "Columns that identify a record (shown by dativo discover)."},
    "cursor_candidates": {"type": ["string", "array"], "items": {"type": "string"},
                          "description": "Columns usable as an incremental cursor."}
  },
  "$defs": {
    "column": {
      "type": "object",
      "additionalProperties": false,
      "required": ["name", "width"],
      "properties": {
        "name": {"type": "string"},
        "width": {"type": "integer", "minimum": 1, "maximum": 1048576},
        "start": {"type": "integer", "minimum": 0, "maximum": 1073741824,
                  "description": "0-based offset (default: where the previous column ends)."},
        "type": {"type": "string", "default": "string",
                 "description": "string, int32, int64, float64, bool, date32 or decimal128(precision, scale)."},
        "nullable": {"type": "boolean", "default": true}
      }
    }
  }
})";

// =================================================================================================
// Errors: thrown inside, turned into a status code and a DativoError at the C boundary.
// =================================================================================================

struct Failure {
  DativoStatusCode code;
  std::string message;
};

[[noreturn]] void fail(DativoStatusCode code, std::string message) {
  throw Failure{code, std::move(message)};
}

template <typename Body>
DativoStatusCode guarded(DativoError* error, Body&& body) {
  try {
    body();
    return DATIVO_STATUS_OK;
  } catch (const Failure& failure) {
    return dativo_error_set(error, failure.code, "%s", failure.message.c_str());
  } catch (const std::bad_alloc&) {
    return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "out of memory");
  } catch (const std::exception& exc) {
    return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "internal error: %s", exc.what());
  } catch (...) {
    return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "unknown internal error");
  }
}

DativoStatusCode set_string(DativoString* out, const std::string& text, DativoError* error) {
  return dativo_string_set(out, text.data(), text.size(), error);
}

// =================================================================================================
// JSON: just enough to read the configuration and split descriptors, and to write results.
// =================================================================================================

struct Json {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  bool integral = false;  // a number written without fraction or exponent that fits int64
  int64_t integer = 0;
  double number = 0;
  std::string string;
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  const Json* find(std::string_view key) const {
    for (const auto& member : members) {
      if (member.first == key) return &member.second;
    }
    return nullptr;
  }

  const char* type_name() const {
    switch (type) {
      case Type::Null: return "null";
      case Type::Bool: return "a boolean";
      case Type::Number: return "a number";
      case Type::String: return "a string";
      case Type::Array: return "a list";
      case Type::Object: return "a mapping";
    }
    return "?";
  }
};

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  Json document() {
    Json value = parse(0);
    skip_space();
    if (pos_ != text_.size()) error("unexpected trailing characters");
    return value;
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;

  [[noreturn]] void error(const char* what) const {
    fail(DATIVO_STATUS_INVALID_ARGUMENT,
         "invalid JSON at byte " + std::to_string(pos_) + ": " + what);
  }

  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }

  bool consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  void expect(char c) {
    skip_space();
    if (pos_ >= text_.size() || text_[pos_] != c) error("unexpected character");
    ++pos_;
  }

  Json parse(int depth) {
    if (depth > 64) error("nested too deeply");
    skip_space();
    if (pos_ >= text_.size()) error("unexpected end");
    Json value;
    const char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      value.type = Json::Type::Object;
      skip_space();
      if (pos_ < text_.size() && text_[pos_] == '}') {
        ++pos_;
        return value;
      }
      while (true) {
        skip_space();
        if (pos_ >= text_.size() || text_[pos_] != '"') error("expected a key");
        std::string key = string_literal();
        expect(':');
        Json item = parse(depth + 1);
        value.members.emplace_back(std::move(key), std::move(item));
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          continue;
        }
        expect('}');
        return value;
      }
    }
    if (c == '[') {
      ++pos_;
      value.type = Json::Type::Array;
      skip_space();
      if (pos_ < text_.size() && text_[pos_] == ']') {
        ++pos_;
        return value;
      }
      while (true) {
        value.items.push_back(parse(depth + 1));
        skip_space();
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          continue;
        }
        expect(']');
        return value;
      }
    }
    if (c == '"') {
      value.type = Json::Type::String;
      value.string = string_literal();
      return value;
    }
    if (consume("true") || consume("false")) {
      value.type = Json::Type::Bool;
      value.boolean = text_[pos_ - 1] == 'e' && text_[pos_ - 4] == 't';
      return value;
    }
    if (consume("null")) return value;
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    error("unexpected character");
  }

  Json number() {
    const size_t start = pos_;
    bool integral = true;
    if (text_[pos_] == '-') ++pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        ++pos_;
      } else if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
        integral = false;
        ++pos_;
      } else {
        break;
      }
    }
    Json value;
    value.type = Json::Type::Number;
    const char* first = text_.data() + start;
    const char* last = text_.data() + pos_;
    if (integral) {
      auto [end, ec] = std::from_chars(first, last, value.integer);
      if (ec == std::errc() && end == last) {
        value.integral = true;
        value.number = static_cast<double>(value.integer);
        return value;
      }
    }
    auto [end, ec] = std::from_chars(first, last, value.number);
    if (ec != std::errc() || end != last) error("invalid number");
    return value;
  }

  unsigned hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      code <<= 4;
      if (c >= '0' && c <= '9') code |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f') code |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') code |= static_cast<unsigned>(c - 'A' + 10);
      else error("invalid \\u escape");
    }
    return code;
  }

  static void append_utf8(std::string& out, unsigned code) {
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (code >> 18));
      out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  std::string string_literal() {
    ++pos_;  // the opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) error("unterminated escape");
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code = hex4();
          if (code >= 0xD800 && code <= 0xDBFF) {  // a surrogate pair
            if (!consume("\\u")) error("lone surrogate");
            const unsigned low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) error("invalid surrogate pair");
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
          } else if (code >= 0xDC00 && code <= 0xDFFF) {
            error("lone surrogate");
          }
          append_utf8(out, code);
          break;
        }
        default: error("invalid escape");
      }
    }
  }
};

Json parse_json(const char* text, const char* what) {
  if (text == nullptr) fail(DATIVO_STATUS_INVALID_ARGUMENT, std::string(what) + " is missing");
  try {
    return JsonParser(text).document();
  } catch (const Failure& failure) {
    fail(failure.code, std::string(what) + ": " + failure.message);
  }
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string quote_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + quote(items[i]);
  return out + "]";
}

// =================================================================================================
// Configuration
// =================================================================================================

enum class Kind { String, Int32, Int64, Float64, Bool, Date32, Decimal128 };
enum class Trim { Both, Right, None };

struct Column {
  std::string name;
  Kind kind = Kind::String;
  int precision = 0;
  int scale = 0;
  int64_t start = 0;  // 0-based offset in the record (characters or bytes, see `units`)
  int64_t width = 0;
  bool nullable = true;
  std::string format;  // Arrow C data interface format string
  size_t mark_begin = 0, mark_end = 0;  // indexes into Config::marks
};

struct Config {
  std::vector<std::string> paths;
  std::vector<Column> columns;
  std::string dataset;
  int64_t batch_size = 65536;
  bool byte_units = false;
  Trim trim = Trim::Both;
  std::vector<std::string> null_values{""};
  int64_t skip_lines = 0;
  int64_t min_split_bytes = 1 << 20;
  std::vector<std::string> primary_key;
  std::vector<std::string> cursor_candidates;
  int64_t parallelism = 1;
  std::vector<int64_t> marks;  // every column start and end, sorted and unique
  int64_t record_end = 0;      // the largest column end
};

const char* const kKeys[] = {"path",      "columns",         "dataset",     "batch_size",
                             "units",     "trim",            "null_values", "skip_lines",
                             "min_split_bytes", "primary_key", "cursor_candidates"};
const char* const kColumnKeys[] = {"name", "width", "start", "type", "nullable"};
const char* const kTypes = "string, int32, int64, float64, bool, date32, decimal128(precision, scale)";

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

template <size_t N>
std::string did_you_mean(std::string_view key, const char* const (&known)[N]) {
  const char* best = nullptr;
  size_t best_distance = 3;  // suggest only close names
  std::string allowed;
  for (const char* candidate : known) {
    allowed += (allowed.empty() ? "" : ", ") + std::string(candidate);
    const size_t distance = edit_distance(key, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best ? "did you mean '" + std::string(best) + "'?" : "allowed keys: " + allowed;
}

int64_t as_int(const Json& value, const std::string& where, int64_t min, int64_t max) {
  if (value.type != Json::Type::Number || !value.integral)
    fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be an integer, not " + value.type_name());
  if (value.integer < min || value.integer > max)
    fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be between " + std::to_string(min) + " and " +
                                             std::to_string(max) + " (got " +
                                             std::to_string(value.integer) + ")");
  return value.integer;
}

std::string as_string(const Json& value, const std::string& where) {
  if (value.type != Json::Type::String)
    fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be a string, not " + value.type_name());
  return value.string;
}

std::vector<std::string> as_strings(const Json& value, const std::string& where, bool single_ok) {
  if (single_ok && value.type == Json::Type::String) return {value.string};
  if (value.type != Json::Type::Array)
    fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be a list of strings, not " + value.type_name());
  std::vector<std::string> out;
  for (size_t i = 0; i < value.items.size(); ++i)
    out.push_back(as_string(value.items[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

std::string lower_without_spaces(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c != ' ') out += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return out;
}

void parse_type(Column& column, const std::string& text, const std::string& where) {
  const std::string type = lower_without_spaces(text);
  static const std::pair<const char*, std::pair<Kind, const char*>> simple[] = {
      {"string", {Kind::String, "u"}},   {"utf8", {Kind::String, "u"}},
      {"int32", {Kind::Int32, "i"}},     {"int64", {Kind::Int64, "l"}},
      {"float64", {Kind::Float64, "g"}}, {"double", {Kind::Float64, "g"}},
      {"bool", {Kind::Bool, "b"}},       {"boolean", {Kind::Bool, "b"}},
      {"date32", {Kind::Date32, "tdD"}}, {"date", {Kind::Date32, "tdD"}},
  };
  for (const auto& [name, kind] : simple) {
    if (type == name) {
      column.kind = kind.first;
      column.format = kind.second;
      return;
    }
  }
  int precision = 0, scale = 0, used = -1;
  if ((std::sscanf(type.c_str(), "decimal128(%d,%d)%n", &precision, &scale, &used) == 2 ||
       std::sscanf(type.c_str(), "decimal(%d,%d)%n", &precision, &scale, &used) == 2) &&
      used == static_cast<int>(type.size())) {
    if (precision < 1 || precision > 38 || scale < 0 || scale > precision)
      fail(DATIVO_STATUS_INVALID_ARGUMENT,
           where + ": decimal128 needs 1 <= precision <= 38 and 0 <= scale <= precision (got '" +
               text + "')");
    column.kind = Kind::Decimal128;
    column.precision = precision;
    column.scale = scale;
    column.format = "d:" + std::to_string(precision) + "," + std::to_string(scale);
    return;
  }
  fail(DATIVO_STATUS_INVALID_ARGUMENT,
       where + ": unknown type '" + text + "'; use one of " + kTypes);
}

Column parse_column(const Json& value, const std::string& where, int64_t next_start) {
  if (value.type != Json::Type::Object)
    fail(DATIVO_STATUS_INVALID_ARGUMENT,
         where + " must be a mapping such as {name: id, width: 8, type: int64}, not " +
             value.type_name());
  Column column;
  column.start = next_start;
  bool has_name = false, has_width = false;
  column.format = "u";
  for (const auto& [key, item] : value.members) {
    const std::string at = where + "." + key;
    if (key == "name") {
      column.name = as_string(item, at);
      has_name = true;
    } else if (key == "width") {
      column.width = as_int(item, at, 1, 1 << 20);
      has_width = true;
    } else if (key == "start") {
      column.start = as_int(item, at, 0, int64_t{1} << 30);
    } else if (key == "type") {
      parse_type(column, as_string(item, at), at);
    } else if (key == "nullable") {
      if (item.type != Json::Type::Bool)
        fail(DATIVO_STATUS_INVALID_ARGUMENT, at + " must be true or false, not " + item.type_name());
      column.nullable = item.boolean;
    } else {
      fail(DATIVO_STATUS_INVALID_ARGUMENT,
           at + ": unknown key; " + did_you_mean(key, kColumnKeys));
    }
  }
  if (!has_name || column.name.empty())
    fail(DATIVO_STATUS_INVALID_ARGUMENT, where + ".name: required key is missing");
  if (!has_width) fail(DATIVO_STATUS_INVALID_ARGUMENT, where + ".width: required key is missing");
  return column;
}

// Settings (the job's source section) and options (source.reader.options) are read together;
// an option overrides a setting of the same name.
std::shared_ptr<Config> parse_config(const char* config_json) {
  const Json root = parse_json(config_json, "config_json");
  auto config = std::make_shared<Config>();
  const Json* context = root.find("context");
  const Json* job = context ? context->find("job") : nullptr;
  if (job && job->type == Json::Type::String) config->dataset = job->string;
  const Json* parallelism = context ? context->find("parallelism") : nullptr;
  if (parallelism && parallelism->integral) config->parallelism = std::max<int64_t>(1, parallelism->integer);

  std::vector<std::pair<std::string, const Json*>> entries;  // (YAML path, value), options last
  for (const char* block : {"settings", "options"}) {
    const Json* section = root.find(block);
    if (section == nullptr || section->type == Json::Type::Null) continue;
    if (section->type != Json::Type::Object)
      fail(DATIVO_STATUS_INVALID_ARGUMENT, std::string(block) + " must be a mapping");
    const std::string prefix = block[0] == 's' ? "source." : "source.reader.options.";
    for (const auto& [key, value] : section->members) {
      const bool known = std::any_of(std::begin(kKeys), std::end(kKeys),
                                     [&](const char* k) { return key == k; });
      if (!known)
        fail(DATIVO_STATUS_INVALID_ARGUMENT,
             prefix + key + ": unknown key; " + did_you_mean(key, kKeys));
      entries.emplace_back(prefix + key, &value);
    }
  }
  bool has_path = false, has_columns = false;
  std::string key_where = "source.primary_key", cursor_where = "source.cursor_candidates";
  for (const auto& [where, value_ptr] : entries) {
    const Json& value = *value_ptr;
    const std::string key = where.substr(where.rfind('.') + 1);
    if (key == "path") {
      config->paths = as_strings(value, where, true);
      if (config->paths.empty()) fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " is empty");
      has_path = true;
    } else if (key == "columns") {
      if (value.type != Json::Type::Array || value.items.empty())
        fail(DATIVO_STATUS_INVALID_ARGUMENT,
             where + " must be a non-empty list of {name, width, type} mappings");
      config->columns.clear();
      int64_t next_start = 0;
      for (size_t i = 0; i < value.items.size(); ++i) {
        Column column = parse_column(value.items[i], where + "[" + std::to_string(i) + "]", next_start);
        next_start = column.start + column.width;
        for (const Column& other : config->columns) {
          if (other.name == column.name)
            fail(DATIVO_STATUS_INVALID_ARGUMENT,
                 where + "[" + std::to_string(i) + "].name: column '" + column.name +
                     "' is defined twice");
        }
        config->columns.push_back(std::move(column));
      }
      has_columns = true;
    } else if (key == "dataset") {
      config->dataset = as_string(value, where);
    } else if (key == "batch_size") {
      config->batch_size = as_int(value, where, 1, 1 << 24);
    } else if (key == "units") {
      const std::string units = as_string(value, where);
      if (units != "chars" && units != "bytes")
        fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be chars or bytes (got '" + units + "')");
      config->byte_units = units == "bytes";
    } else if (key == "trim") {
      const std::string trim = as_string(value, where);
      if (trim == "both") config->trim = Trim::Both;
      else if (trim == "right") config->trim = Trim::Right;
      else if (trim == "none") config->trim = Trim::None;
      else fail(DATIVO_STATUS_INVALID_ARGUMENT, where + " must be both, right or none (got '" + trim + "')");
    } else if (key == "null_values") {
      config->null_values = as_strings(value, where, false);
    } else if (key == "skip_lines") {
      config->skip_lines = as_int(value, where, 0, 1 << 20);
    } else if (key == "min_split_bytes") {
      config->min_split_bytes = as_int(value, where, 1, std::numeric_limits<int64_t>::max());
    } else if (key == "primary_key") {
      config->primary_key = as_strings(value, where, true);
      key_where = where;
    } else if (key == "cursor_candidates") {
      config->cursor_candidates = as_strings(value, where, true);
      cursor_where = where;
    }
  }
  if (!has_path) fail(DATIVO_STATUS_INVALID_ARGUMENT, "source.path: required key is missing");
  if (!has_columns) fail(DATIVO_STATUS_INVALID_ARGUMENT, "source.columns: required key is missing");
  for (const auto* names : {&config->primary_key, &config->cursor_candidates}) {
    for (const std::string& name : *names) {
      const bool exists = std::any_of(config->columns.begin(), config->columns.end(),
                                      [&](const Column& c) { return c.name == name; });
      if (!exists)
        fail(DATIVO_STATUS_INVALID_ARGUMENT, (names == &config->primary_key ? key_where : cursor_where) +
                                                 ": '" + name + "' is not one of the columns");
    }
  }
  for (const Column& column : config->columns) {
    config->marks.push_back(column.start);
    config->marks.push_back(column.start + column.width);
    config->record_end = std::max(config->record_end, column.start + column.width);
  }
  std::sort(config->marks.begin(), config->marks.end());
  config->marks.erase(std::unique(config->marks.begin(), config->marks.end()), config->marks.end());
  for (Column& column : config->columns) {
    column.mark_begin = static_cast<size_t>(
        std::lower_bound(config->marks.begin(), config->marks.end(), column.start) - config->marks.begin());
    column.mark_end = static_cast<size_t>(std::lower_bound(config->marks.begin(), config->marks.end(),
                                                           column.start + column.width) -
                                          config->marks.begin());
  }
  return config;
}

// =================================================================================================
// Files
// =================================================================================================

struct FileCloser {
  void operator()(FILE* file) const {
    if (file) std::fclose(file);
  }
};
using File = std::unique_ptr<FILE, FileCloser>;

File open_file(const std::string& path) {
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    const int code = errno;
    fail(code == ENOENT ? DATIVO_STATUS_NOT_FOUND : DATIVO_STATUS_IO,
         "cannot open " + path + ": " + std::strerror(code));
  }
  return file;
}

bool has_magic(const std::string& pattern) {
  return pattern.find_first_of("*?[") != std::string::npos;
}

// Every path, expanded (globs sorted by name); NOT_FOUND names the first that matches nothing.
std::vector<std::string> expand(const Config& config) {
  std::vector<std::string> files;
  for (const std::string& pattern : config.paths) {
    if (!has_magic(pattern)) {
      struct stat info;
      if (stat(pattern.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
        fail(DATIVO_STATUS_NOT_FOUND, "source.path '" + pattern + "' is not a file");
      files.push_back(pattern);
      continue;
    }
    glob_t matches;
    const int status = glob(pattern.c_str(), 0, nullptr, &matches);
    std::vector<std::string> found;
    if (status == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        struct stat info;
        if (stat(matches.gl_pathv[i], &info) == 0 && S_ISREG(info.st_mode))
          found.emplace_back(matches.gl_pathv[i]);
      }
    }
    globfree(&matches);
    if (found.empty()) fail(DATIVO_STATUS_NOT_FOUND, "source.path '" + pattern + "' matches no files");
    files.insert(files.end(), found.begin(), found.end());
  }
  return files;
}

int64_t file_size(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0)
    fail(DATIVO_STATUS_IO, "cannot stat " + path + ": " + std::strerror(errno));
  return static_cast<int64_t>(info.st_size);
}

// The offset just after the first `lines` lines (the header), or the file size.
int64_t after_lines(const std::string& path, int64_t lines) {
  if (lines == 0) return 0;
  File file = open_file(path);
  std::vector<char> buffer(1 << 16);
  int64_t offset = 0;
  while (true) {
    const size_t n = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (n == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (buffer[i] == '\n' && --lines == 0) return offset + static_cast<int64_t>(i) + 1;
    }
    offset += static_cast<int64_t>(n);
  }
  if (std::ferror(file.get())) fail(DATIVO_STATUS_IO, "cannot read " + path);
  return offset;
}

// 1-based number of the line starting at `offset` (only computed for error messages).
int64_t line_number(const std::string& path, int64_t offset) {
  File file(std::fopen(path.c_str(), "rb"));
  if (!file) return 0;
  std::vector<char> buffer(1 << 20);
  int64_t line = 1, seen = 0;
  while (seen < offset) {
    const size_t want = static_cast<size_t>(std::min<int64_t>(offset - seen, static_cast<int64_t>(buffer.size())));
    const size_t n = std::fread(buffer.data(), 1, want, file.get());
    if (n == 0) break;
    line += std::count(buffer.data(), buffer.data() + n, '\n');
    seen += static_cast<int64_t>(n);
  }
  return line;
}

// Reads the lines of one byte range [start, end): those that start inside it, the last one read to
// its end even past `end`.
class LineReader {
 public:
  LineReader(std::string path, int64_t start, int64_t end) : path_(std::move(path)), end_(end) {
    file_ = open_file(path_);
    if (start > 0) {
      // Start one byte early: if that byte is the newline ending the previous line, the line at
      // `start` is ours; otherwise the partial line belongs to the previous range.
      if (fseeko(file_.get(), start - 1, SEEK_SET) != 0)
        fail(DATIVO_STATUS_IO, "cannot seek in " + path_ + ": " + std::strerror(errno));
      buffer_offset_ = start - 1;
      skip_partial_ = true;
    }
  }

  const std::string& path() const { return path_; }

  // The next line (without its \n or \r\n) and its offset; false at the end of the range.
  bool next(std::string_view& line, int64_t& offset) {
    while (true) {
      if (!take(line, offset)) return false;
      if (skip_partial_) {
        skip_partial_ = false;
        continue;
      }
      if (offset >= end_) return false;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      return true;
    }
  }

 private:
  std::string path_;
  int64_t end_;
  File file_;
  std::vector<char> buffer_ = std::vector<char>(1 << 20);
  size_t begin_ = 0, size_ = 0;  // unread bytes are buffer_[begin_, size_)
  int64_t buffer_offset_ = 0;    // file offset of buffer_[0]
  bool eof_ = false;
  bool skip_partial_ = false;

  bool take(std::string_view& line, int64_t& offset) {
    while (true) {
      const char* base = buffer_.data();
      const void* newline = std::memchr(base + begin_, '\n', size_ - begin_);
      if (newline != nullptr) {
        const size_t at = static_cast<size_t>(static_cast<const char*>(newline) - base);
        line = std::string_view(base + begin_, at - begin_);
        offset = buffer_offset_ + static_cast<int64_t>(begin_);
        begin_ = at + 1;
        return true;
      }
      if (eof_) {
        if (begin_ == size_) return false;
        line = std::string_view(base + begin_, size_ - begin_);  // the last line has no newline
        offset = buffer_offset_ + static_cast<int64_t>(begin_);
        begin_ = size_;
        return true;
      }
      if (begin_ > 0) {  // keep the partial line, make room after it
        std::memmove(buffer_.data(), base + begin_, size_ - begin_);
        buffer_offset_ += static_cast<int64_t>(begin_);
        size_ -= begin_;
        begin_ = 0;
      }
      if (size_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);  // a line longer than the buffer
      const size_t n = std::fread(buffer_.data() + size_, 1, buffer_.size() - size_, file_.get());
      if (n == 0) {
        if (std::ferror(file_.get())) fail(DATIVO_STATUS_IO, "cannot read " + path_ + ": " + std::strerror(errno));
        eof_ = true;
      }
      size_ += n;
    }
  }
};

// =================================================================================================
// Arrow: schemas and arrays built by hand (Arrow C data interface)
// =================================================================================================

struct SchemaData {
  std::string format;
  std::string name;
  std::vector<ArrowSchema> children;  // the child structs live here; each releases itself
  std::vector<ArrowSchema*> child_pointers;
};

void release_schema(ArrowSchema* schema) {
  auto* data = static_cast<SchemaData*>(schema->private_data);
  for (ArrowSchema& child : data->children) {
    if (child.release) child.release(&child);  // skip children the consumer moved away
  }
  delete data;
  schema->release = nullptr;
}

void init_schema(ArrowSchema* out, SchemaData* data, int64_t flags) {
  out->format = data->format.c_str();
  out->name = data->name.c_str();
  out->metadata = nullptr;
  out->flags = flags;
  out->n_children = static_cast<int64_t>(data->children.size());
  out->children = data->child_pointers.empty() ? nullptr : data->child_pointers.data();
  out->dictionary = nullptr;
  out->release = release_schema;
  out->private_data = data;
}

void export_schema(const Config& config, ArrowSchema* out) {
  auto data = std::make_unique<SchemaData>();
  data->format = "+s";
  data->children.resize(config.columns.size());
  for (size_t i = 0; i < config.columns.size(); ++i) {
    const Column& column = config.columns[i];
    auto child = std::make_unique<SchemaData>();
    child->format = column.format;
    child->name = column.name;
    init_schema(&data->children[i], child.release(), column.nullable ? ARROW_FLAG_NULLABLE : 0);
    data->child_pointers.push_back(&data->children[i]);
  }
  init_schema(out, data.release(), 0);
}

// One column of the batch being built.
struct ColumnBuilder {
  int64_t length = 0;
  int64_t null_count = 0;
  std::vector<uint8_t> validity;  // bit i set: row i is valid
  std::vector<uint8_t> values;    // fixed-size values, or value bits (bool)
  std::vector<int32_t> offsets;   // string offsets, length + 1 of them
  std::vector<char> bytes;        // string data

  void reset(const Column& column, int64_t capacity) {
    length = null_count = 0;
    validity.clear();
    values.clear();
    offsets.clear();
    bytes.clear();
    const size_t rows = static_cast<size_t>(capacity);
    validity.reserve(rows / 8 + 1);
    switch (column.kind) {
      case Kind::String:
        offsets.reserve(rows + 1);
        offsets.push_back(0);
        bytes.reserve(std::max<size_t>(1, rows * static_cast<size_t>(std::min<int64_t>(column.width, 32))));
        break;
      case Kind::Bool: values.reserve(rows / 8 + 1); break;
      default: values.reserve(rows * value_size(column.kind)); break;
    }
  }

  static size_t value_size(Kind kind) {
    switch (kind) {
      case Kind::Int32: case Kind::Date32: return 4;
      case Kind::Int64: case Kind::Float64: return 8;
      case Kind::Decimal128: return 16;
      default: return 0;
    }
  }

  void mark(bool valid) {
    if ((length & 7) == 0) validity.push_back(0);
    if (valid) validity.back() |= static_cast<uint8_t>(1u << (length & 7));
    else ++null_count;
  }

  template <typename T>
  void append(bool valid, T value) {
    mark(valid);
    const size_t at = values.size();
    values.resize(at + sizeof(T));
    std::memcpy(values.data() + at, &value, sizeof(T));
    ++length;
  }

  void append_bool(bool valid, bool value) {
    mark(valid);
    if ((length & 7) == 0) values.push_back(0);
    if (value) values.back() |= static_cast<uint8_t>(1u << (length & 7));
    ++length;
  }

  void append_string(bool valid, std::string_view text) {
    mark(valid);
    if (valid) bytes.insert(bytes.end(), text.begin(), text.end());
    offsets.push_back(static_cast<int32_t>(bytes.size()));
    ++length;
  }
};

struct ArrayData {
  std::vector<uint8_t> validity, values;
  std::vector<int32_t> offsets;
  std::vector<char> bytes;
  const void* buffers[3] = {nullptr, nullptr, nullptr};
  std::vector<ArrowArray> children;  // the child structs live here; each releases itself
  std::vector<ArrowArray*> child_pointers;
};

void release_array(ArrowArray* array) {
  auto* data = static_cast<ArrayData*>(array->private_data);
  for (ArrowArray& child : data->children) {
    if (child.release) child.release(&child);
  }
  delete data;
  array->release = nullptr;
}

void init_array(ArrowArray* out, ArrayData* data, int64_t length, int64_t null_count, int64_t n_buffers) {
  out->length = length;
  out->null_count = null_count;
  out->offset = 0;
  out->n_buffers = n_buffers;
  out->n_children = static_cast<int64_t>(data->children.size());
  out->buffers = data->buffers;
  out->children = data->child_pointers.empty() ? nullptr : data->child_pointers.data();
  out->dictionary = nullptr;
  out->release = release_array;
  out->private_data = data;
}

// Moves the builders' buffers into a struct array (a record batch); no copy.
void export_batch(const Config& config, std::vector<ColumnBuilder>& builders, int64_t rows, ArrowArray* out) {
  auto batch = std::make_unique<ArrayData>();
  batch->children.resize(builders.size());
  for (size_t i = 0; i < builders.size(); ++i) {
    ColumnBuilder& builder = builders[i];
    auto data = std::make_unique<ArrayData>();
    data->validity = std::move(builder.validity);
    data->buffers[0] = builder.null_count ? data->validity.data() : nullptr;
    int64_t n_buffers = 2;
    if (config.columns[i].kind == Kind::String) {
      data->offsets = std::move(builder.offsets);
      data->bytes = std::move(builder.bytes);
      data->bytes.reserve(1);  // a non-null data pointer even when every string is empty
      data->buffers[1] = data->offsets.data();
      data->buffers[2] = data->bytes.data();
      n_buffers = 3;
    } else {
      data->values = std::move(builder.values);
      data->values.reserve(1);
      data->buffers[1] = data->values.data();
    }
    init_array(&batch->children[i], data.release(), builder.length, builder.null_count, n_buffers);
    batch->child_pointers.push_back(&batch->children[i]);
  }
  init_array(out, batch.release(), rows, 0, 1);
}

// =================================================================================================
// Values
// =================================================================================================

// Length of the valid UTF-8 sequence at p (at most `available` bytes), or 0 if it is invalid.
inline size_t utf8_length(const unsigned char* p, size_t available) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < available && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

inline bool is_ascii(std::string_view text) {
  unsigned char any = 0;
  for (const char c : text) any |= static_cast<unsigned char>(c);
  return (any & 0x80) == 0;
}

bool valid_utf8(std::string_view text) {
  if (is_ascii(text)) return true;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8_length(p + i, text.size() - i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

inline bool blank(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim_right(std::string_view text) {
  while (!text.empty() && blank(text.back())) text.remove_suffix(1);
  return text;
}

inline std::string_view trim_both(std::string_view text) {
  text = trim_right(text);
  while (!text.empty() && blank(text.front())) text.remove_prefix(1);
  return text;
}

// A bad value: which column, and why.
struct BadValue {
  size_t column;
  std::string why;
};

[[noreturn]] void bad(size_t column, std::string_view raw, const char* what) {
  throw BadValue{column, "'" + std::string(raw) + "' is not " + what};
}

template <typename T>
T parse_integer(size_t column, std::string_view text, const char* what) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  T value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) bad(column, text, what);  // e.g. "too large for an int32"
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) bad(column, text, what);
  return value;
}

double parse_double(size_t column, std::string_view text) {
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
    bad(column, text, "a number");
  return value;
}

bool parse_bool(size_t column, std::string_view text) {
  const std::string word = lower_without_spaces(text);
  if (word == "true" || word == "t" || word == "yes" || word == "y" || word == "1") return true;
  if (word == "false" || word == "f" || word == "no" || word == "n" || word == "0") return false;
  bad(column, text, "a boolean (true/false, t/f, yes/no, y/n, 1/0)");
}

int32_t parse_date(size_t column, std::string_view text) {
  // YYYY-MM-DD or YYYYMMDD
  int year = 0, month = 0, day = 0;
  auto digits = [&](size_t at, size_t count, int& out) {
    if (at + count > text.size()) return false;
    out = 0;
    for (size_t i = at; i < at + count; ++i) {
      if (text[i] < '0' || text[i] > '9') return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  bool ok = false;
  if (text.size() == 10 && text[4] == '-' && text[7] == '-')
    ok = digits(0, 4, year) && digits(5, 2, month) && digits(8, 2, day);
  else if (text.size() == 8)
    ok = digits(0, 4, year) && digits(4, 2, month) && digits(6, 2, day);
  static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (!ok || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] + (month == 2 && leap))
    bad(column, text, "a date (YYYY-MM-DD or YYYYMMDD)");
  // days since 1970-01-01 (Howard Hinnant's days_from_civil)
  const int y = year - (month <= 2);
  const int era = (y >= 0 ? y : y - 399) / 400;
  const int yoe = y - era * 400;
  const int doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int128 parse_decimal(size_t column, std::string_view text, const Column& spec) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  int128 value = 0;
  int digits = 0, fraction = 0;  // significant digits of the unscaled value; digits after the point
  bool seen_digit = false, seen_point = false;
  auto too_wide = [&] {
    return BadValue{column, "'" + std::string(text) + "' does not fit decimal128(" +
                                std::to_string(spec.precision) + ", " + std::to_string(spec.scale) + ")"};
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.' && !seen_point) {
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9') bad(column, text, "a decimal number");
    seen_digit = true;
    if (seen_point && fraction == spec.scale) {
      if (c != '0')
        throw BadValue{column, "'" + std::string(text) + "' has more than " + std::to_string(spec.scale) +
                                   " decimal places"};
      continue;
    }
    if (seen_point) ++fraction;
    if ((value != 0 || c != '0') && ++digits > spec.precision) throw too_wide();  // before it overflows
    value = value * 10 + (c - '0');
  }
  if (!seen_digit) bad(column, text, "a decimal number");
  for (; fraction < spec.scale; ++fraction) {
    if (value != 0 && ++digits > spec.precision) throw too_wide();
    value *= 10;
  }
  return negative ? -value : value;
}

// =================================================================================================
// The stream of one split
// =================================================================================================

struct Range {
  std::string file;
  int64_t start;
  int64_t end;
};

struct StreamState {
  std::shared_ptr<const Config> config;  // shared: the stream may outlive the reader handle
  std::vector<Range> ranges;
  size_t next_range = 0;
  std::unique_ptr<LineReader> lines;
  std::vector<ColumnBuilder> builders;
  std::vector<size_t> byte_at;  // byte offset in the line of each Config::marks position
  std::string last_error;
  int error_code = 0;
};

// Fills state.byte_at for `line`: where each column boundary falls, in bytes.
void locate(StreamState& state, std::string_view line) {
  const Config& config = *state.config;
  const size_t marks = config.marks.size();
  const size_t record = static_cast<size_t>(config.record_end);
  if (config.byte_units || is_ascii(line.substr(0, std::min(line.size(), record)))) {
    for (size_t k = 0; k < marks; ++k)
      state.byte_at[k] = std::min(line.size(), static_cast<size_t>(config.marks[k]));
    return;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(line.data());
  size_t position = 0;
  int64_t character = 0;
  size_t k = 0;
  while (k < marks) {
    if (config.marks[k] == character || position >= line.size()) {
      state.byte_at[k++] = position;
      continue;
    }
    const size_t n = utf8_length(p + position, line.size() - position);
    if (n == 0) {
      throw BadValue{static_cast<size_t>(-1), "invalid UTF-8 at byte " + std::to_string(position + 1) +
                                                  " of the line (character " + std::to_string(character + 1) +
                                                  "); the file must be UTF-8 text"};
    }
    position += n;
    ++character;
  }
}

void parse_line(StreamState& state, std::string_view line) {
  const Config& config = *state.config;
  locate(state, line);
  for (size_t i = 0; i < config.columns.size(); ++i) {
    const Column& column = config.columns[i];
    ColumnBuilder& builder = state.builders[i];
    const size_t begin = state.byte_at[column.mark_begin];
    const size_t end = state.byte_at[column.mark_end];
    std::string_view raw = line.substr(begin, end - begin);
    std::string_view text = column.kind != Kind::String || config.trim == Trim::Both ? trim_both(raw)
                            : config.trim == Trim::Right                             ? trim_right(raw)
                                                                                     : raw;
    const bool null = std::find(config.null_values.begin(), config.null_values.end(), text) !=
                      config.null_values.end();
    if (null && !column.nullable)
      throw BadValue{i, "the value is empty (or a null value) but the column is declared nullable: false"};
    switch (column.kind) {
      case Kind::String:
        if (!null && config.byte_units && !valid_utf8(text))
          throw BadValue{i, "the value is not valid UTF-8 (is a multi-byte character cut by the column "
                            "width? units: chars counts characters instead of bytes)"};
        builder.append_string(!null, text);
        break;
      case Kind::Int32:
        builder.append<int32_t>(!null, null ? 0 : parse_integer<int32_t>(i, text, "an int32"));
        break;
      case Kind::Int64:
        builder.append<int64_t>(!null, null ? 0 : parse_integer<int64_t>(i, text, "an int64"));
        break;
      case Kind::Float64:
        builder.append<double>(!null, null ? 0.0 : parse_double(i, text));
        break;
      case Kind::Bool:
        builder.append_bool(!null, null ? false : parse_bool(i, text));
        break;
      case Kind::Date32:
        builder.append<int32_t>(!null, null ? 0 : parse_date(i, text));
        break;
      case Kind::Decimal128:
        builder.append<int128>(!null, null ? 0 : parse_decimal(i, text, column));
        break;
    }
  }
}

constexpr size_t kMaxStringBytes = size_t{1} << 30;  // int32 offsets: cut the batch well before 2 GiB

int stream_get_schema(ArrowArrayStream* stream, ArrowSchema* out) {
  auto* state = static_cast<StreamState*>(stream->private_data);
  try {
    export_schema(*state->config, out);
    return 0;
  } catch (const std::bad_alloc&) {
    state->last_error = "out of memory";
    return ENOMEM;
  }
}

int stream_fail(StreamState& state, int code, std::string message) {
  state.error_code = code;
  state.last_error = std::move(message);
  state.lines.reset();
  return code;
}

int stream_get_next(ArrowArrayStream* stream, ArrowArray* out) {
  auto* state = static_cast<StreamState*>(stream->private_data);
  if (state->error_code) return state->error_code;  // a failed stream stays failed
  const Config& config = *state->config;
  int64_t rows = 0;
  std::string_view line;
  int64_t offset = 0;
  try {
    for (size_t i = 0; i < state->builders.size(); ++i) state->builders[i].reset(config.columns[i], config.batch_size);
    while (rows < config.batch_size) {
      if (!state->lines) {
        if (state->next_range == state->ranges.size()) break;
        const Range& range = state->ranges[state->next_range++];
        state->lines = std::make_unique<LineReader>(range.file, range.start, range.end);
      }
      if (!state->lines->next(line, offset)) {
        state->lines.reset();
        continue;
      }
      if (line.empty()) continue;  // blank lines carry no record
      parse_line(*state, line);
      ++rows;
      bool full = false;
      for (const ColumnBuilder& builder : state->builders) full |= builder.bytes.size() > kMaxStringBytes;
      if (full) break;
    }
    if (rows == 0) {
      out->release = nullptr;  // the end of the stream
      return 0;
    }
    export_batch(config, state->builders, rows, out);
    return 0;
  } catch (const BadValue& bad_value) {
    const std::string& path = state->lines ? state->lines->path() : std::string("?");
    std::string where = path + " line " + std::to_string(line_number(path, offset));
    if (bad_value.column < config.columns.size()) {
      const Column& column = config.columns[bad_value.column];
      where += ", column '" + column.name + "' (" + (config.byte_units ? "bytes " : "characters ") +
               std::to_string(column.start + 1) + "-" + std::to_string(column.start + column.width) + ")";
    }
    return stream_fail(*state, EINVAL, where + ": " + bad_value.why);
  } catch (const Failure& failure) {
    return stream_fail(*state, EIO, failure.message);
  } catch (const std::bad_alloc&) {
    return stream_fail(*state, ENOMEM, "out of memory");
  } catch (const std::exception& exc) {
    return stream_fail(*state, EIO, std::string("internal error: ") + exc.what());
  }
}

const char* stream_get_last_error(ArrowArrayStream* stream) {
  auto* state = static_cast<StreamState*>(stream->private_data);
  return state->last_error.empty() ? nullptr : state->last_error.c_str();
}

void stream_release(ArrowArrayStream* stream) {
  delete static_cast<StreamState*>(stream->private_data);
  stream->release = nullptr;
}

// =================================================================================================
// Planning: byte ranges of about total / parallelism bytes (at least min_split_bytes)
// =================================================================================================

std::string plan_splits(const Config& config) {
  struct Piece {
    std::string file;
    int64_t start, end;
  };
  std::vector<Piece> pieces;
  int64_t total = 0;
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> files;
  for (const std::string& file : expand(config)) {
    const int64_t size = file_size(file);
    const int64_t start = std::min(size, after_lines(file, config.skip_lines));
    files.push_back({file, {start, size}});
    total += size - start;
  }
  const int64_t target = std::max(config.min_split_bytes, (total + config.parallelism - 1) / config.parallelism);
  for (const auto& [file, extent] : files) {
    const int64_t length = extent.second - extent.first;
    if (length == 0) continue;
    const int64_t count = (length + target - 1) / target;
    for (int64_t i = 0; i < count; ++i)
      pieces.push_back({file, extent.first + length * i / count, extent.first + length * (i + 1) / count});
  }
  // Small files share a split; every split holds about `target` bytes.
  std::string out = "[";
  int64_t id = 0, size = 0;
  bool open = false;
  for (const Piece& piece : pieces) {
    if (open && size + (piece.end - piece.start) > target) {
      out += "]}}";
      open = false;
    }
    if (!open) {
      out += (id ? ", " : "") + std::string("{\"id\": \"") + std::to_string(id) + "\", \"params\": {\"ranges\": [";
      ++id;
      open = true;
      size = 0;
    } else {
      out += ", ";
    }
    out += "{\"file\": " + quote(piece.file) + ", \"start\": " + std::to_string(piece.start) +
           ", \"end\": " + std::to_string(piece.end) + "}";
    size += piece.end - piece.start;
  }
  if (open) out += "]}}";
  if (id == 0) out += "{\"id\": \"0\", \"params\": {\"ranges\": []}}";  // nothing to read: one empty split
  return out + "]";
}

std::vector<Range> parse_ranges(const char* split_json) {
  const Json split = parse_json(split_json, "split_json");
  const Json* params = split.find("params");
  const Json* ranges = params ? params->find("ranges") : nullptr;
  if (ranges == nullptr || ranges->type != Json::Type::Array)
    fail(DATIVO_STATUS_INVALID_ARGUMENT, "split_json: params.ranges must be a list");
  std::vector<Range> out;
  for (const Json& item : ranges->items) {
    const Json* file = item.find("file");
    const Json* start = item.find("start");
    const Json* end = item.find("end");
    if (!file || file->type != Json::Type::String || !start || !start->integral || !end || !end->integral ||
        start->integer < 0 || end->integer < start->integer)
      fail(DATIVO_STATUS_INVALID_ARGUMENT, "split_json: each range needs file, start and end (start <= end)");
    out.push_back({file->string, start->integer, end->integer});
  }
  return out;
}

}  // namespace

// =================================================================================================
// The C ABI (prototypes, and so C linkage, come from dativo_plugin.h)
// =================================================================================================

struct DativoReader {
  std::shared_ptr<const Config> config;
};

int32_t dativo_abi_version(void) { return DATIVO_PLUGIN_ABI_VERSION; }

const char* dativo_plugin_info(void) { return kInfo; }

const char* dativo_plugin_config_schema(const char* role) {
  return role != nullptr && std::strcmp(role, "reader") == 0 ? kOptionsSchema : nullptr;
}

DativoStatusCode dativo_reader_new(const char* config_json, DativoReader** out, DativoError* error) {
  return guarded(error, [&] {
    auto reader = std::make_unique<DativoReader>();
    reader->config = parse_config(config_json);
    *out = reader.release();
  });
}

DativoStatusCode dativo_reader_check(DativoReader* reader, DativoError* error) {
  return guarded(error, [&] {
    for (const std::string& file : expand(*reader->config)) open_file(file);
  });
}

DativoStatusCode dativo_reader_discover(DativoReader* reader, DativoString* out, DativoError* error) {
  return guarded(error, [&] {
    const Config& config = *reader->config;
    const std::string text = "[{\"name\": " + quote(config.dataset) +
                             ", \"primary_key\": " + quote_list(config.primary_key) +
                             ", \"cursor_candidates\": " + quote_list(config.cursor_candidates) + "}]";
    if (set_string(out, text, error) != DATIVO_STATUS_OK) throw std::bad_alloc();
  });
}

DativoStatusCode dativo_reader_schema(DativoReader* reader, const char* dataset, ArrowSchema* out,
                                      DativoError* error) {
  return guarded(error, [&] {
    if (dataset == nullptr || reader->config->dataset != dataset)
      fail(DATIVO_STATUS_NOT_FOUND, "no dataset named '" + std::string(dataset ? dataset : "") + "'");
    export_schema(*reader->config, out);
  });
}

DativoStatusCode dativo_reader_plan(DativoReader* reader, const char* dataset_json, const char* state_json,
                                    DativoString* out, DativoError* error) {
  (void)dataset_json;  // one dataset; Dativo itself filters rows at or below an incremental cursor
  (void)state_json;
  return guarded(error, [&] {
    if (set_string(out, plan_splits(*reader->config), error) != DATIVO_STATUS_OK) throw std::bad_alloc();
  });
}

DativoStatusCode dativo_reader_open(DativoReader* reader, const char* split_json, ArrowArrayStream* out,
                                    DativoError* error) {
  return guarded(error, [&] {
    auto state = std::make_unique<StreamState>();
    state->config = reader->config;
    state->ranges = parse_ranges(split_json);
    state->builders.resize(reader->config->columns.size());
    state->byte_at.resize(reader->config->marks.size());
    out->get_schema = stream_get_schema;
    out->get_next = stream_get_next;
    out->get_last_error = stream_get_last_error;
    out->release = stream_release;
    out->private_data = state.release();
  });
}

void dativo_reader_release(DativoReader* reader) { delete reader; }
