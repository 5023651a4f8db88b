"""The C ABI of ``sdk/cpp/dativo_plugin.h`` in ctypes: status codes, structs, and a loaded library.

:class:`Library` loads a shared library, checks its ABI version and the functions a role requires, and calls
them with fresh error and string structs that it releases exactly once. :mod:`dativo.plugins.native` builds
the Reader and Writer classes on it. Pointers are ``c_void_p`` throughout, so ctypes never converts or frees
them behind our back.
"""

from __future__ import annotations

import ctypes
import json
import weakref
from pathlib import Path
from typing import Any

from dativo.api import Role
from dativo.errors import PluginIncompatible

ABI_VERSION = 1
"""``DATIVO_PLUGIN_ABI_VERSION`` of the ``dativo_plugin.h`` this Dativo implements."""
SUPPORTED_ABI_VERSIONS = frozenset({ABI_VERSION})
"""Library ABI versions this loader accepts."""
DEFAULT_PREFIX = "dativo_"

# DativoStatusCode values (dativo_plugin.h)
OK, UNKNOWN, NOT_IMPLEMENTED, INVALID_ARGUMENT, NOT_FOUND, IO, INVALID_DATA, UNAUTHENTICATED = range(8)
COMMIT_FAILED, INTERNAL = 8, 9
STATUS_NAMES = {
    OK: "OK", UNKNOWN: "UNKNOWN", NOT_IMPLEMENTED: "NOT_IMPLEMENTED", INVALID_ARGUMENT: "INVALID_ARGUMENT",
    NOT_FOUND: "NOT_FOUND", IO: "IO", INVALID_DATA: "INVALID_DATA", UNAUTHENTICATED: "UNAUTHENTICATED",
    COMMIT_FAILED: "COMMIT_FAILED", INTERNAL: "INTERNAL",
}


# --- the C structs ------------------------------------------------------------------------------------------


class CError(ctypes.Structure):
    _fields_ = [
        ("message", ctypes.c_void_p),
        ("vendor_code", ctypes.c_int32),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class CString(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_int64),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class ArrowSchema(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_void_p),
        ("name", ctypes.c_void_p),
        ("metadata", ctypes.c_void_p),
        ("flags", ctypes.c_int64),
        ("n_children", ctypes.c_int64),
        ("children", ctypes.c_void_p),
        ("dictionary", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class ArrowArrayStream(ctypes.Structure):
    _fields_ = [
        ("get_schema", ctypes.c_void_p),
        ("get_next", ctypes.c_void_p),
        ("get_last_error", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


CStruct = CError | CString | ArrowSchema | ArrowArrayStream
_RELEASE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def release(struct: CStruct) -> None:
    """Call a struct's own release callback, if it still has one; never twice."""
    if struct.release:
        # The callback must see its struct still alive: Arrow's own callbacks do nothing when release is NULL.
        _RELEASE(struct.release)(ctypes.addressof(struct))
        struct.release = None  # in case a careless callback left it set


_P, _S, _I32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
_ERR, _STR = ctypes.POINTER(CError), ctypes.POINTER(CString)
SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "abi_version": (_I32, []),
    "plugin_info": (_P, []),
    "plugin_config_schema": (_P, [_S]),
    "reader_new": (_I32, [_S, ctypes.POINTER(_P), _ERR]),
    "reader_check": (_I32, [_P, _ERR]),
    "reader_discover": (_I32, [_P, _STR, _ERR]),
    "reader_schema": (_I32, [_P, _S, _P, _ERR]),
    "reader_plan": (_I32, [_P, _S, _S, _STR, _ERR]),
    "reader_open": (_I32, [_P, _S, _P, _ERR]),
    "reader_release": (None, [_P]),
    "writer_new": (_I32, [_S, ctypes.POINTER(_P), _ERR]),
    "writer_check": (_I32, [_P, _ERR]),
    "writer_state": (_I32, [_P, _S, _STR, _ERR]),
    "writer_prepare": (_I32, [_P, _S, _P, _S, _ERR]),
    "writer_write": (_I32, [_P, _S, _P, _STR, _ERR]),
    "writer_commit": (_I32, [_P, _S, _S, _S, _S, _STR, _ERR]),
    "writer_abort": (_I32, [_P, _S, _ERR]),
    "writer_release": (None, [_P]),
}
IDENTITY = ("abi_version", "plugin_info", "plugin_config_schema")
"""Functions of the library as a whole (only ``abi_version`` is required)."""
REQUIRED: dict[Role, tuple[str, ...]] = {
    "reader": ("reader_new", "reader_open", "reader_release"),
    "writer": ("writer_new", "writer_write", "writer_commit", "writer_release"),
}
"""Functions a library must export (after its prefix) to be loaded as a reader or a writer."""
OPTIONAL: dict[Role, tuple[str, ...]] = {
    "reader": ("reader_check", "reader_discover", "reader_schema", "reader_plan"),
    "writer": ("writer_check", "writer_state", "writer_prepare", "writer_abort"),
}


def status_name(code: int) -> str:
    """The name of a ``DativoStatusCode``."""
    return STATUS_NAMES.get(code, f"status {code}")


class Library:
    """A loaded shared library: its functions, ABI version and self-description.

    Args:
        path: The library file.
        name: How the job (or package) names it, for messages.
        prefix: The prefix of every exported symbol (default ``dativo_``).
        role: The role it is loaded for; the functions that role requires must be exported.

    Raises:
        PluginIncompatible: It cannot be loaded, is not a Dativo plugin, has another ABI version, or lacks
            a required function.
    """

    def __init__(self, path: Path, *, name: str, prefix: str, role: Role) -> None:
        self.path = path
        self.name = name
        self.prefix = prefix
        try:
            self._dll = ctypes.CDLL(str(path))
        except OSError as exc:
            raise PluginIncompatible(
                f"native library '{name}' cannot be loaded: {exc}",
                hint="Build it for this platform, and install the libraries it links to (`ldd` lists them).",
            ) from None
        self.functions: dict[str, Any] = {}
        for function in (*IDENTITY, *REQUIRED[role], *OPTIONAL[role]):
            try:
                pointer = self._dll[prefix + function]
            except AttributeError:
                continue
            pointer.restype, pointer.argtypes = SIGNATURES[function]
            self.functions[function] = pointer
        if "abi_version" not in self.functions:
            raise PluginIncompatible(
                f"native library '{name}' is not a Dativo plugin: it does not export {prefix}abi_version",
                hint="Implement the C ABI of sdk/cpp/dativo_plugin.h (see docs/plugins/cpp.md), or set "
                "implementation.symbol_prefix if its functions are named differently.",
            )
        self.abi_version = int(self.functions["abi_version"]())
        if self.abi_version not in SUPPORTED_ABI_VERSIONS:
            raise PluginIncompatible(
                f"native library '{name}' was built for Dativo plugin ABI {self.abi_version}, "
                f"but this Dativo supports plugin ABI {ABI_VERSION}",
                hint=f"Rebuild it against the sdk/cpp/dativo_plugin.h of this Dativo (ABI {ABI_VERSION}), "
                "or use a Dativo that supports its ABI.",
            )
        missing = [prefix + f for f in REQUIRED[role] if f not in self.functions]
        if missing:
            raise PluginIncompatible(
                f"native library '{name}' does not export {', '.join(missing)}, which a {role} must provide",
                hint='Define them with C linkage (extern "C") and default visibility (DATIVO_EXPORT), as '
                "sdk/cpp/dativo_plugin.h describes; `nm -D --defined-only` lists what it exports.",
            )
        self.info = self._info()
        self.version = str(self.info.get("version") or "0.0.0")
        self.language = str(self.info.get("language") or "c")
        self.description = str(self.info.get("description") or "")
        self.config_schema: dict[str, Any] | None = self._config_schema(role)
        """The JSON Schema of the role's options (``plugin_config_schema``), ``None`` if it declares none."""

    def _info(self) -> dict[str, Any]:
        if "plugin_info" not in self.functions:
            return {}
        return self._static_json(
            "plugin_info()", self.functions["plugin_info"](), "{}",
            'Return a static JSON object such as {"name": "foo", "version": "1.0.0", "language": "c++"}.',
        )

    def _config_schema(self, role: Role) -> dict[str, Any] | None:
        if "plugin_config_schema" not in self.functions:
            return None
        pointer = self.functions["plugin_config_schema"](role.encode())
        if not pointer:
            return None
        return self._static_json(
            f'plugin_config_schema("{role}")', pointer, "",
            'Return a static JSON Schema object such as {"type": "object", "properties": {...}, '
            '"additionalProperties": false}, or NULL when the options are not declared.',
        )

    def _static_json(self, call: str, pointer: int | None, empty: str, hint: str) -> dict[str, Any]:
        """The JSON object a library function returned as a static string."""
        text = ctypes.string_at(pointer).decode("utf-8", "replace") if pointer else empty
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            value = exc
        if not isinstance(value, dict):
            raise PluginIncompatible(
                f"native library '{self.name}': {self.prefix}{call} does not return a JSON object "
                f"({value}): {text[:200]!r}",
                hint=hint,
            )
        return value

    def call(self, function: str, *args: Any) -> tuple[int, str | None]:
        """Call ``function`` with a fresh error struct.

        Returns:
            The status code and the library's error message (``None`` on success or without a message).
            The error struct is released exactly once, whatever the status.
        """
        error = CError()
        status = int(self.functions[function](*args, ctypes.byref(error)))
        message = None
        if error.message:
            message = ctypes.string_at(error.message).decode("utf-8", "replace").strip()
            if error.vendor_code:
                message = f"{message} (code {error.vendor_code})"
        release(error)
        return status, message if status != OK else None

    def call_for_text(self, function: str, *args: Any) -> tuple[int, str | None]:
        """Call a ``function`` whose last argument before the error is a ``DativoString`` result.

        Returns:
            ``(OK, text)`` or ``(status, error message)``; the string is released exactly once.
        """
        out = CString()
        status, message = self.call(function, *args, ctypes.byref(out))
        text = None
        if status == OK and out.data:
            text = ctypes.string_at(out.data, out.size if out.size >= 0 else -1).decode("utf-8", "replace")
        release(out)
        return status, (text if status == OK else message)

    def symbol(self, function: str) -> str:
        """The exported name of ``function``."""
        return self.prefix + function


class Handle:
    """A reader or writer handle of a library, released exactly once: by ``release()`` or when collected."""

    def __init__(self, library: Library, role: Role, pointer: int) -> None:
        self.pointer = pointer
        self._finalizer = weakref.finalize(self, library.functions[f"{role}_release"], pointer)
        self._finalizer.atexit = False  # at interpreter exit the process is going away anyway

    def release(self) -> None:
        """Release the handle now (once; later calls do nothing)."""
        self._finalizer()
