// dativo_plugin.hpp: C++17 helpers over dativo_plugin.h, for plugins built with the libraries this SDK carries:
// nanoarrow (nanoarrow/nanoarrow.hpp: Arrow arrays, schemas and streams) and nlohmann/json (nlohmann/json.hpp).
//
// Everything here is inline; the only file to compile besides the plugin is nanoarrow/nanoarrow.c. What it adds
// is the glue every plugin needs at the C boundary:
//
//   dativo::guard(error, code, [&] { ...; return DATIVO_STATUS_OK; })
//       runs the body of an exported function and turns any exception into a status and a message
//       (nothing may cross the C boundary): a dativo::Failure keeps its own code, an invalid JSON text or
//       value gives `code`, std::bad_alloc gives DATIVO_STATUS_INTERNAL;
//   dativo::stream_guard(&last_error, [&] { ...; return 0; })
//       the same for an ArrowArrayStream callback, which returns an errno code instead;
//   dativo::parse_json(text, "split_json")    a JSON argument, or a Failure naming it;
//   dativo::set_json(out, value, error)       a JSON result (struct DativoString);
//   DATIVO_ARROW_OK(expr, &arrow_error)        a nanoarrow call that must succeed, else a Failure with its message.
#ifndef DATIVO_PLUGIN_HPP
#define DATIVO_PLUGIN_HPP

#include <cerrno>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "dativo_plugin.h"
#include "nanoarrow/nanoarrow.hpp"
#include "nlohmann/json.hpp"

namespace dativo {

using json = nlohmann::json;

/// A failure with the status code Dativo should see (see DativoStatusCode in dativo_plugin.h).
struct Failure : std::runtime_error {
  DativoStatusCode code;
  Failure(DativoStatusCode status, const std::string& message) : std::runtime_error(message), code(status) {}
};

/// Runs `body` (which returns a DativoStatusCode) and turns an exception into `error`'s message and a status:
/// a Failure's own code, std::bad_alloc → DATIVO_STATUS_INTERNAL, anything else → `code`.
template <typename Body>
DativoStatusCode guard(DativoError* error, DativoStatusCode code, Body&& body) noexcept {
  try {
    return body();
  } catch (const Failure& e) {
    return dativo_error_set(error, e.code, "%s", e.what());
  } catch (const std::bad_alloc&) {
    return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "out of memory");
  } catch (const std::exception& e) {
    return dativo_error_set(error, code, "%s", e.what());
  } catch (...) {
    return dativo_error_set(error, DATIVO_STATUS_INTERNAL, "an unknown C++ exception");
  }
}

/// Runs the body of an ArrowArrayStream callback (which returns 0 or an errno code), keeping an exception's
/// message in `*last_error` for get_last_error: a Failure of DATIVO_STATUS_INVALID_DATA gives EINVAL,
/// std::bad_alloc ENOMEM, anything else EIO.
template <typename Body>
int stream_guard(std::string* last_error, Body&& body) noexcept {
  try {
    return body();
  } catch (const Failure& e) {
    *last_error = e.what();
    return e.code == DATIVO_STATUS_INVALID_DATA ? EINVAL : EIO;
  } catch (const std::bad_alloc&) {
    *last_error = "out of memory";
    return ENOMEM;
  } catch (const std::exception& e) {
    try {
      *last_error = e.what();
    } catch (...) {
    }
    return EIO;
  } catch (...) {
    return EIO;
  }
}

/// Parses the JSON argument `what` (NULL is null); a malformed text is DATIVO_STATUS_INVALID_ARGUMENT.
inline json parse_json(const char* text, const char* what) {
  try {
    return json::parse(text ? text : "null");
  } catch (const json::parse_error& e) {
    throw Failure(DATIVO_STATUS_INVALID_ARGUMENT, std::string(what) + " is not valid JSON: " + e.what());
  }
}

/// Fills `out` with the JSON text of `value` (see "JSON out" in dativo_plugin.h).
inline DativoStatusCode set_json(DativoString* out, const json& value, DativoError* error) {
  const std::string text = value.dump();
  return dativo_string_set(out, text.data(), text.size(), error);
}

/// Throws a Failure with `status` naming `what` when a nanoarrow call did not return NANOARROW_OK.
inline void arrow_ok(int code, const ArrowError* error, const char* what,
                     DativoStatusCode status = DATIVO_STATUS_INTERNAL) {
  if (code == NANOARROW_OK) return;
  std::string message = std::string(what) + " failed (errno " + std::to_string(code) + ")";
  if (error != nullptr && error->message[0] != '\0') message += ": " + std::string(error->message);
  throw Failure(status, message);
}

}  // namespace dativo

/// A nanoarrow call that must succeed: `DATIVO_ARROW_OK(ArrowArrayAppendInt(column, 1), &arrow_error);`
/// (pass nullptr for calls that take no ArrowError).
#define DATIVO_ARROW_OK(EXPR, ERROR) ::dativo::arrow_ok((EXPR), (ERROR), #EXPR)

#endif  // DATIVO_PLUGIN_HPP
