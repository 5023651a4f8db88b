"""Native plugins: a C or C++ shared library implementing ``sdk/cpp/dativo_plugin.h``, loaded with ctypes.

:func:`library` loads a library once, checks its ABI version and its exported functions, and makes a
regular :class:`dativo.api.Reader` or :class:`dativo.api.Writer` subclass that drives it, so the engine,
fallback and reports treat it like any other plugin. Arrow data crosses the boundary through the Arrow C
data interface (``ArrowArrayStream``, ``ArrowSchema``) without a copy; configuration and descriptors travel
as JSON.

Ownership follows the header: every struct the library fills is zeroed first and released exactly once,
here or by pyarrow after it moved it, on success and on every error path.

A job names a library with ``implementation: {lib: ./build/libfoo.so}``. A package can also ship a library
with a one-line module and an entry point::

    # dativo_foo/__init__.py
    reader = dativo.plugins.native.library(Path(__file__).parent / "libfoo.so")

    # pyproject.toml
    [project.entry-points."dativo.readers"]
    foo = "dativo_foo:reader"
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from dativo.api import CommitInfo, Context, Dataset, Mode, Reader, Split, State, Writer, WrittenFiles
from dativo.errors import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    DativoError,
    PluginFailed,
    PluginIncompatible,
    PluginNotFound,
)

ABI_VERSION = 1
"""``DATIVO_PLUGIN_ABI_VERSION`` of the ``dativo_plugin.h`` this Dativo implements."""
SUPPORTED_ABI_VERSIONS = frozenset({ABI_VERSION})
"""Library ABI versions this loader accepts."""
DEFAULT_PREFIX = "dativo_"

Role = Literal["reader", "writer"]

# DativoStatusCode values (dativo_plugin.h)
OK, UNKNOWN, NOT_IMPLEMENTED, INVALID_ARGUMENT, NOT_FOUND, IO, INVALID_DATA, UNAUTHENTICATED = range(8)
COMMIT_FAILED, INTERNAL = 8, 9
STATUS_NAMES = {
    OK: "OK", UNKNOWN: "UNKNOWN", NOT_IMPLEMENTED: "NOT_IMPLEMENTED", INVALID_ARGUMENT: "INVALID_ARGUMENT",
    NOT_FOUND: "NOT_FOUND", IO: "IO", INVALID_DATA: "INVALID_DATA", UNAUTHENTICATED: "UNAUTHENTICATED",
    COMMIT_FAILED: "COMMIT_FAILED", INTERNAL: "INTERNAL",
}


# --- the C structs (pointers as c_void_p: ctypes never converts or frees them behind our back) ----------


class _Error(ctypes.Structure):
    _fields_ = [
        ("message", ctypes.c_void_p),
        ("vendor_code", ctypes.c_int32),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _String(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_int64),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


class _ArrowSchema(ctypes.Structure):
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


class _ArrowArrayStream(ctypes.Structure):
    _fields_ = [
        ("get_schema", ctypes.c_void_p),
        ("get_next", ctypes.c_void_p),
        ("get_last_error", ctypes.c_void_p),
        ("release", ctypes.c_void_p),
        ("private_data", ctypes.c_void_p),
    ]


_Struct = _Error | _String | _ArrowSchema | _ArrowArrayStream
_RELEASE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _release(struct: _Struct) -> None:
    """Call a struct's own release callback, if it still has one; never twice."""
    if struct.release:
        # The callback must see its struct still alive: Arrow's own callbacks do nothing when release is NULL.
        _RELEASE(struct.release)(ctypes.addressof(struct))
        struct.release = None  # in case a careless callback left it set


_P, _S, _I32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
_ERR, _STR = ctypes.POINTER(_Error), ctypes.POINTER(_String)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "abi_version": (_I32, []),
    "plugin_info": (_P, []),
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
REQUIRED: dict[Role, tuple[str, ...]] = {
    "reader": ("reader_new", "reader_open", "reader_release"),
    "writer": ("writer_new", "writer_write", "writer_commit", "writer_release"),
}
"""Functions a library must export (after its prefix) to be loaded as a reader or a writer."""
OPTIONAL: dict[Role, tuple[str, ...]] = {
    "reader": ("reader_check", "reader_discover", "reader_schema", "reader_plan"),
    "writer": ("writer_check", "writer_state", "writer_prepare", "writer_abort"),
}


def _status(code: int) -> str:
    return STATUS_NAMES.get(code, f"status {code}")


def _fix(role: str) -> str:
    side = "source.reader" if role == "reader" else "target.writer"
    return f"Fix the plugin, or set {side}.fallback: default to use the built-in {role}."


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
        for function in ("abi_version", "plugin_info", *REQUIRED[role], *OPTIONAL[role]):
            try:
                pointer = self._dll[prefix + function]
            except AttributeError:
                continue
            pointer.restype, pointer.argtypes = _SIGNATURES[function]
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

    def _info(self) -> dict[str, Any]:
        if "plugin_info" not in self.functions:
            return {}
        pointer = self.functions["plugin_info"]()
        text = ctypes.string_at(pointer).decode("utf-8", "replace") if pointer else "{}"
        try:
            info = json.loads(text)
        except json.JSONDecodeError as exc:
            info = exc
        if not isinstance(info, dict):
            raise PluginIncompatible(
                f"native library '{self.name}': {self.prefix}plugin_info() does not return a JSON object "
                f"({info}): {text[:200]!r}",
                hint='Return a static JSON object such as '
                '{"name": "foo", "version": "1.0.0", "language": "c++"}.',
            )
        return info

    def call(self, function: str, *args: Any) -> tuple[int, str | None]:
        """Call ``function`` with a fresh error struct.

        Returns:
            The status code and the library's error message (``None`` on success or without a message).
            The error struct is released exactly once, whatever the status.
        """
        error = _Error()
        status = int(self.functions[function](*args, ctypes.byref(error)))
        message = None
        if error.message:
            message = ctypes.string_at(error.message).decode("utf-8", "replace").strip()
            if error.vendor_code:
                message = f"{message} (code {error.vendor_code})"
        _release(error)
        return status, message if status != OK else None

    def call_for_text(self, function: str, *args: Any) -> tuple[int, str | None]:
        """Call a ``function`` whose last argument before the error is a ``DativoString`` result.

        Returns:
            ``(OK, text)`` or ``(status, error message)``; the string is released exactly once.
        """
        out = _String()
        status, message = self.call(function, *args, ctypes.byref(out))
        text = None
        if status == OK and out.data:
            text = ctypes.string_at(out.data, out.size if out.size >= 0 else -1).decode("utf-8", "replace")
        _release(out)
        return status, (text if status == OK else message)

    def symbol(self, function: str) -> str:
        """The exported name of ``function``."""
        return self.prefix + function


class _Handle:
    """A reader or writer handle of a library, released exactly once: by ``release()`` or when collected."""

    def __init__(self, library: Library, role: Role, pointer: int) -> None:
        self.pointer = pointer
        self._finalizer = weakref.finalize(self, library.functions[f"{role}_release"], pointer)
        self._finalizer.atexit = False  # at interpreter exit the process is going away anyway

    def release(self) -> None:
        self._finalizer()


def _error(
    lib: Library, role: Role, function: str, status: int, message: str | None, *, where: str = ""
) -> DativoError:
    """Translate a failed call into the error the user should see (see DativoStatusCode in the header)."""
    side = "source" if role == "reader" else "target"
    text = message or f"{lib.symbol(function)}() returned {_status(status)} without a message"
    stage = function.partition("_")[2]
    if stage in ("new", "check") and status in (INVALID_ARGUMENT, NOT_FOUND):
        return ConfigError(
            f"the native {role} refused its configuration: {text}" if stage == "new" else text,
            hint=f"Fix the {side} section or {side}.{role}.options in the job file "
            "(the plugin's documentation lists what it accepts).",
        )
    if stage == "check" and status in (IO, UNAUTHENTICATED):
        return ConnectionFailed(
            text, hint=f"Check that the {side} is reachable and its credentials are right."
        )
    if stage == "commit":
        if status == COMMIT_FAILED:
            return CommitFailed(text, hint="Nothing was published; the run can be retried.")
        return CommitStateUnknown(
            f"{lib.symbol(function)}() failed with {_status(status)}: {message}" if message else text,
            hint="Check the target, then rerun with the same --run-id: a committed run is a no-op.",
        )
    failed = f"{lib.symbol(function)}() failed with {_status(status)}: {message}" if message else text
    return PluginFailed(
        f"{where}{failed}",
        role=role,
        stage=_stage(function),
        hint=_fix(role),
    )


def _stage(function: str) -> str:
    """The contract method a library function serves (``reader_open`` → ``read``), for messages."""
    stage = function.partition("_")[2]
    return {"new": "load", "open": "read", "schema": "discover"}.get(stage, stage)


def _invalid(lib: Library, role: Role, function: str, problem: str) -> PluginFailed:
    return PluginFailed(
        f"{lib.symbol(function)}() {problem}", role=role, stage=_stage(function),
        hint=f"Fix the plugin so it follows sdk/cpp/dativo_plugin.h. {_fix(role)}",
    )


def _json(lib: Library, role: Role, function: str, text: str | None, kind: type) -> Any:
    """Parse a JSON result of ``function`` and check its top-level type."""
    try:
        value = json.loads(text or "")
    except json.JSONDecodeError as exc:
        problem = f"returned invalid JSON ({exc}): {(text or '')[:200]!r}"
        raise _invalid(lib, role, function, problem) from None
    if not isinstance(value, kind):
        raise _invalid(lib, role, function, f"returned a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")


def _dataset_json(dataset: Dataset) -> bytes:
    return _dumps({
        "name": dataset.name,
        "primary_key": list(dataset.primary_key),
        "cursor_candidates": list(dataset.cursor_candidates),
    })


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class NativeOptions(BaseModel):
    """Options of a native plugin: anything. The library validates them itself when it is created."""

    model_config = ConfigDict(extra="allow")


class _NativePlugin:
    """What native readers and writers share: the library, and a handle created from the job's config."""

    native_library: ClassVar[Library]
    role: ClassVar[Role]
    Config: ClassVar[type[BaseModel]] = NativeOptions

    def _create(self, config: BaseModel, ctx: Context) -> _Handle:
        lib, role = self.native_library, self.role
        payload = {
            "options": config.model_dump(),
            "settings": dict(ctx.settings),
            "context": {
                "job": ctx.job, "run_id": ctx.run_id, "plugin": ctx.plugin, "parallelism": ctx.parallelism,
                "cursor": ctx.cursor, "work_dir": ctx.work_dir,
            },
        }
        out = ctypes.c_void_p()
        status, message = lib.call(f"{role}_new", _dumps(payload), ctypes.byref(out))
        if status != OK:
            if out.value:  # the header says not to, but a handle must never leak
                lib.functions[f"{role}_release"](out.value)
            raise _error(lib, role, f"{role}_new", status, message)
        if not out.value:
            raise _invalid(lib, role, f"{role}_new", "returned OK but no handle")
        return _Handle(lib, role, out.value)

    def _text(self, function: str, *args: Any) -> str | None:
        lib, role = self.native_library, self.role
        status, text = lib.call_for_text(function, self._handle.pointer, *args)
        if status != OK:
            raise _error(lib, role, function, status, text)
        return text

    def _check(self) -> None:
        if f"{self.role}_check" in self.native_library.functions:
            status, message = self.native_library.call(f"{self.role}_check", self._handle.pointer)
            if status != OK:
                raise _error(self.native_library, self.role, f"{self.role}_check", status, message)

    def close(self) -> None:
        """Release the library's handle (once)."""
        self._handle.release()


class NativeReader(_NativePlugin, Reader):
    """A reader implemented by a native library; :func:`library` makes one subclass per library."""

    role: ClassVar[Role] = "reader"

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._handle = self._create(config, ctx)

    def check(self) -> None:
        """Call ``reader_check`` if the library exports it."""
        self._check()

    def discover(self) -> list[Dataset]:
        """The library's datasets (``reader_discover``), with their schemas (``reader_schema``)."""
        lib = self.native_library
        if "reader_discover" not in lib.functions:
            datasets = [Dataset(name=self.ctx.job)]
        else:
            entries = _json(lib, "reader", "reader_discover", self._text("reader_discover"), list)
            datasets = []
            for entry in entries:
                valid = (
                    isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"]
                    and _strings(entry.get("primary_key", []))
                    and _strings(entry.get("cursor_candidates", []))
                )
                if not valid:
                    raise _invalid(
                        lib, "reader", "reader_discover",
                        f'returned {json.dumps(entry)[:200]}, not {{"name": str, "primary_key": [str], '
                        '"cursor_candidates": [str]}',
                    )
                datasets.append(Dataset(
                    name=entry["name"],
                    primary_key=tuple(entry.get("primary_key", ())),
                    cursor_candidates=tuple(entry.get("cursor_candidates", ())),
                ))
        if "reader_schema" in lib.functions:
            datasets = [replace(d, schema=self._schema(d.name)) for d in datasets]
        return datasets

    def _schema(self, dataset: str) -> pa.Schema:
        lib = self.native_library
        out = _ArrowSchema()
        try:
            status, message = lib.call(
                "reader_schema", self._handle.pointer, dataset.encode(), ctypes.addressof(out)
            )
            if status != OK:
                raise _error(lib, "reader", "reader_schema", status, message, where=f"dataset '{dataset}': ")
            if not out.release:
                problem = f"returned OK but no schema for dataset '{dataset}'"
                raise _invalid(lib, "reader", "reader_schema", problem)
            try:
                return pa.Schema._import_from_c(ctypes.addressof(out))
            except (pa.ArrowException, ValueError) as exc:
                problem = f"returned an invalid ArrowSchema: {exc}"
                raise _invalid(lib, "reader", "reader_schema", problem) from None
        finally:
            _release(out)  # a no-op once pyarrow moved it

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """The library's splits (``reader_plan``), or one split."""
        lib = self.native_library
        if "reader_plan" not in lib.functions:
            return super().plan(dataset, state)
        text = self._text("reader_plan", _dataset_json(dataset), _dumps(state))
        entries = _json(lib, "reader", "reader_plan", text, list)
        splits = []
        for entry in entries:
            if not (isinstance(entry, dict) and isinstance(entry.get("id"), str | int)
                    and isinstance(entry.get("params", {}), dict)):
                raise _invalid(lib, "reader", "reader_plan",
                               f'returned {json.dumps(entry)[:200]}, not {{"id": str, "params": {{...}}}}')
            splits.append(Split(dataset.name, str(entry["id"]), entry.get("params", {})))
        if len({s.id for s in splits}) != len(splits):
            raise _invalid(lib, "reader", "reader_plan", "returned splits with duplicate ids")
        return splits

    def read(self, split: Split) -> pa.RecordBatchReader:
        """Open the split (``reader_open``) and import its ``ArrowArrayStream`` without a copy."""
        lib = self.native_library
        where = f"dataset '{split.dataset}' split '{split.id}': "
        payload = _dumps({"dataset": split.dataset, "id": split.id, "params": dict(split.params)})
        stream = _ArrowArrayStream()
        try:
            status, message = lib.call("reader_open", self._handle.pointer, payload, ctypes.addressof(stream))
            if status != OK:
                raise _error(lib, "reader", "reader_open", status, message, where=where)
            if not stream.release:
                problem = f"returned OK but no stream for split '{split.id}'"
                raise _invalid(lib, "reader", "reader_open", problem)
            try:
                imported = pa.RecordBatchReader._import_from_c(ctypes.addressof(stream))
            except (pa.ArrowException, ValueError) as exc:
                raise _invalid(lib, "reader", "reader_open", f"returned an unusable stream: {exc}") from None
        finally:
            _release(stream)  # a no-op once pyarrow moved it
        return pa.RecordBatchReader.from_batches(imported.schema, _batches(imported, lib, where))


def _batches(stream: pa.RecordBatchReader, lib: Library, where: str) -> Iterator[pa.RecordBatch]:
    """The stream's batches, with the library's own message when ``get_next`` fails."""
    try:
        while True:
            try:
                batch = stream.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowException as exc:
                raise PluginFailed(
                    f"read() of {where.removesuffix(': ')} failed: {exc}",
                    role="reader",
                    stage="read",
                    hint="Fix the data or the plugin, or set source.reader.fallback: default to use the "
                    "built-in reader.",
                ) from None
            yield batch
    finally:
        stream.close()  # releases the C stream now, not whenever the garbage collector runs


class NativeWriter(_NativePlugin, Writer):
    """A writer implemented by a native library; :func:`library` makes one subclass per library."""

    role: ClassVar[Role] = "writer"

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._handle = self._create(config, ctx)

    def check(self) -> None:
        """Call ``writer_check`` if the library exports it."""
        self._check()

    def state(self, dataset: Dataset) -> State | None:
        """The state of the last commit (``writer_state``), or ``None``."""
        if "writer_state" not in self.native_library.functions:
            return None
        text = self._text("writer_state", _dataset_json(dataset))
        if (text or "").strip() == "null":
            return None
        return _json(self.native_library, "writer", "writer_state", text, dict)

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """Call ``writer_prepare`` (with a borrowed ``ArrowSchema``) if the library exports it."""
        lib = self.native_library
        if "writer_prepare" not in lib.functions:
            return
        exported = _ArrowSchema()
        schema._export_to_c(ctypes.addressof(exported))
        try:
            status, message = lib.call(
                "writer_prepare", self._handle.pointer, _dataset_json(dataset), ctypes.addressof(exported),
                mode.encode(),
            )
        finally:
            _release(exported)
        if status != OK:
            raise _error(lib, "writer", "writer_prepare", status, message)

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Hand the stream to ``writer_write`` (which takes ownership) and parse what it wrote."""
        lib = self.native_library
        exported = _ArrowArrayStream()
        stream._export_to_c(ctypes.addressof(exported))
        payload = _dumps({"dataset": split.dataset, "id": split.id, "params": dict(split.params)})
        try:
            status, text = lib.call_for_text(
                "writer_write", self._handle.pointer, payload, ctypes.addressof(exported)
            )
        finally:
            _release(exported)  # the library should have moved or released it; never leak it
        if status != OK:
            raise _error(lib, "writer", "writer_write", status, text,
                         where=f"dataset '{split.dataset}' split '{split.id}': ")
        value = _json(lib, "writer", "writer_write", text, dict)
        files, rows, size = value.get("files", []), value.get("rows", 0), value.get("bytes", 0)
        if not (_strings(files) and isinstance(rows, int) and isinstance(size, int)
                and isinstance(value.get("extra", {}), dict)):
            raise _invalid(lib, "writer", "writer_write",
                           f'returned {text!r:.200}, not '
                           '{"files": [str], "rows": int, "bytes": int, "extra": {}}')
        return WrittenFiles(split.dataset, split.id, files, rows, size, value.get("extra", {}))

    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """Publish everything with ``writer_commit``."""
        lib = self.native_library
        status, text = lib.call_for_text(
            "writer_commit", self._handle.pointer, _dataset_json(dataset), _dumps([vars(w) for w in files]),
            _dumps(state), run_id.encode(),
        )
        if status != OK:
            raise _error(lib, "writer", "writer_commit", status, text)
        try:
            value = json.loads(text or "")
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict):  # it did publish; only its description is broken
            raise CommitStateUnknown(
                f"{lib.symbol('writer_commit')}() returned OK with an invalid description: {text!r:.200}",
                hint=f'Return {{"commit_id": ..., "rows": ..., "no_op": ...}}; rerun with --run-id {run_id} '
                "to settle it.",
            )
        commit_id = value.get("commit_id")
        return CommitInfo(
            commit_id=None if commit_id is None else str(commit_id),
            rows=int(value.get("rows") or 0),
            no_op=bool(value.get("no_op", False)),
        )

    def abort(self, files: list[WrittenFiles]) -> None:
        """Call ``writer_abort`` if the library exports it."""
        lib = self.native_library
        if "writer_abort" not in lib.functions:
            return
        status, message = lib.call("writer_abort", self._handle.pointer, _dumps([vars(w) for w in files]))
        if status != OK:
            raise _error(lib, "writer", "writer_abort", status, message)


_classes: dict[tuple[str, Role, str], type] = {}
_lock = threading.Lock()


def library(
    path: str | os.PathLike[str],
    *,
    role: Role = "reader",
    symbol_prefix: str = DEFAULT_PREFIX,
    name: str | None = None,
) -> type[NativeReader] | type[NativeWriter]:
    """Load a native plugin library and return the Reader (or Writer) class that drives it.

    The library is loaded once per process (per file, role and prefix); later calls return the same class.

    Args:
        path: The ``.so`` / ``.dylib`` file.
        role: ``reader`` or ``writer``.
        symbol_prefix: Prefix of the library's exported functions.
        name: How messages name it (default: ``path`` as given).

    Returns:
        A subclass of :class:`NativeReader` or :class:`NativeWriter`, with the library's version and language.

    Raises:
        PluginNotFound: The file does not exist.
        PluginIncompatible: It is not a Dativo plugin, was built for another ABI version, or lacks a
            required function.
    """
    if role not in REQUIRED:
        raise ValueError(f"role must be 'reader' or 'writer', not {role!r}")
    shown = name or str(path)
    file = Path(path).expanduser()
    if not file.is_file():
        looked = "" if str(file) == shown else f" (looked for {file.absolute()})"
        raise PluginNotFound(
            f"native library '{shown}' does not exist{looked}",
            hint="Build it (the bundled examples: `make plugins-cpp`), or fix the path; a relative "
            "implementation.lib starts at the job file's folder.",
        )
    file = file.resolve()
    key = (str(file), role, symbol_prefix)
    with _lock:
        cls = _classes.get(key)
        if cls is None:
            lib = Library(file, name=shown, prefix=symbol_prefix, role=role)
            base: type = NativeReader if role == "reader" else NativeWriter
            cls = type(f"{base.__name__}[{file.name}]", (base,), {
                "native_library": lib,
                "version": lib.version,
                "language": lib.language,
                "__module__": __name__,
                "__doc__": lib.description or f"The native {role} in {file}.",
            })
            _classes[key] = cls
    return cls
