"""Native plugins: a C or C++ shared library implementing ``sdk/cpp/dativo_plugin.h``, loaded with ctypes.

:func:`library` loads a library (:class:`~dativo.plugins.cabi.Library`, the C ABI in ctypes), checks its
ABI version and its exported functions, and makes a regular :class:`dativo.api.Reader` or
:class:`dativo.api.Writer` subclass that drives it, so the engine, fallback and reports treat it like any
other plugin. Arrow data crosses the boundary through the Arrow C
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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import CommitInfo, Context, Dataset, Mode, Reader, Role, Split, State, Writer, WrittenFiles
from dativo.errors import (
    ConfigError,
    ConnectionFailed,
    DativoError,
    PluginFailed,
    PluginNotFound,
    commit_error,
    fallback_hint,
    side,
)
from dativo.plugins.cabi import (
    ABI_VERSION,
    COMMIT_FAILED,
    DEFAULT_PREFIX,
    INVALID_ARGUMENT,
    IO,
    NOT_FOUND,
    OK,
    REQUIRED,
    SUPPORTED_ABI_VERSIONS,
    UNAUTHENTICATED,
    ArrowArrayStream,
    ArrowSchema,
    Handle,
    Library,
    release,
    status_name,
)
from dativo.plugins.options import PluginOptions, declared
from dativo.plugins.protocol import (
    commit_from_json,
    configure_body,
    dataset_from_json,
    dataset_to_json,
    dumps,
    split_to_json,
    splits_from_json,
    written_from_json,
)


def _error(
    lib: Library, role: Role, function: str, status: int, message: str | None, *, where: str = ""
) -> DativoError:
    """Translate a failed call into the error the user should see (see DativoStatusCode in the header)."""
    block = side(role).partition(".")[0]  # source or target
    text = message or f"{lib.symbol(function)}() returned {status_name(status)} without a message"
    stage = function.partition("_")[2]
    if stage in ("new", "check") and status in (INVALID_ARGUMENT, NOT_FOUND):
        return ConfigError(
            f"the native {role} refused its configuration: {text}" if stage == "new" else text,
            hint=f"Fix the {block} section or {block}.{role}.options in the job file "
            "(the plugin's documentation lists what it accepts).",
        )
    if stage == "check" and status in (IO, UNAUTHENTICATED):
        return ConnectionFailed(
            text, hint=f"Check that the {block} is reachable and its credentials are right."
        )
    failed = f"{lib.symbol(function)}() failed with {status_name(status)}: {message}" if message else text
    if stage == "commit":
        return commit_error(text if status == COMMIT_FAILED else failed, failed=status == COMMIT_FAILED)
    return PluginFailed(f"{where}{failed}", role=role, stage=_stage(function), hint=fallback_hint(role))


def _stage(function: str) -> str:
    """The contract method a library function serves (``reader_open`` → ``read``), for messages."""
    stage = function.partition("_")[2]
    return {"new": "load", "open": "read", "schema": "discover"}.get(stage, stage)


def _invalid(lib: Library, role: Role, function: str, problem: str) -> PluginFailed:
    return PluginFailed(
        f"{lib.symbol(function)}() {problem}", role=role, stage=_stage(function),
        hint=f"Fix the plugin so it follows sdk/cpp/dativo_plugin.h. {fallback_hint(role)}",
    )


def _json(lib: Library, role: Role, function: str, text: str | None, kind: type) -> Any:
    """Parse a JSON result of ``function`` and check its top-level type."""
    try:
        value = json.loads(text or "")
    except (json.JSONDecodeError, RecursionError) as exc:
        problem = f"returned invalid JSON ({exc}): {(text or '')[:200]!r}"
        raise _invalid(lib, role, function, problem) from None
    if not isinstance(value, kind):
        raise _invalid(lib, role, function, f"returned a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _dataset_json(dataset: Dataset) -> bytes:
    return dumps(dataset_to_json(dataset, schema=False))


class NativeOptions(PluginOptions):
    """Options of a native plugin: anything, unless the library declares them (``plugin_config_schema``).

    The library validates them itself too, when it is created.
    """


class _NativePlugin:
    """What native readers and writers share: the library, and a handle created from the job's config."""

    native_library: ClassVar[Library]
    role: ClassVar[Role]
    Config: ClassVar[type[BaseModel]] = NativeOptions

    def _create(self, config: BaseModel, ctx: Context) -> Handle:
        lib, role = self.native_library, self.role
        out = ctypes.c_void_p()
        options = config.model_dump(by_alias=True, exclude_unset=True)  # as the job wrote them
        payload = dumps(configure_body(options, ctx))
        status, message = lib.call(f"{role}_new", payload, ctypes.byref(out))
        if status != OK:
            if out.value:  # the header says not to, but a handle must never leak
                lib.functions[f"{role}_release"](out.value)
            raise _error(lib, role, f"{role}_new", status, message)
        if not out.value:
            raise _invalid(lib, role, f"{role}_new", "returned OK but no handle")
        return Handle(lib, role, out.value)

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
            try:
                datasets = [dataset_from_json({**e, "schema": None} if isinstance(e, dict) else e)
                            for e in entries]
            except ValueError as exc:
                problem = f"returned a dataset that is not valid: {exc}"
                raise _invalid(lib, "reader", "reader_discover", problem) from None
        if "reader_schema" in lib.functions:
            datasets = [replace(d, schema=self._schema(d.name)) for d in datasets]
        return datasets

    def _schema(self, dataset: str) -> pa.Schema:
        lib = self.native_library
        out = ArrowSchema()
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
            release(out)  # a no-op once pyarrow moved it

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """The library's splits (``reader_plan``), or one split."""
        lib = self.native_library
        if "reader_plan" not in lib.functions:
            return super().plan(dataset, state)
        text = self._text("reader_plan", _dataset_json(dataset), dumps(state))
        try:
            return splits_from_json(dataset, _json(lib, "reader", "reader_plan", text, list))
        except ValueError as exc:
            problem = f"returned a plan that is not valid: {exc}"
            raise _invalid(lib, "reader", "reader_plan", problem) from None

    def read(self, split: Split) -> pa.RecordBatchReader:
        """Open the split (``reader_open``) and import its ``ArrowArrayStream`` without a copy."""
        lib = self.native_library
        where = f"dataset '{split.dataset}' split '{split.id}': "
        payload = dumps(split_to_json(split))
        stream = ArrowArrayStream()
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
            release(stream)  # a no-op once pyarrow moved it
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
        exported = ArrowSchema()
        schema._export_to_c(ctypes.addressof(exported))
        try:
            status, message = lib.call(
                "writer_prepare", self._handle.pointer, _dataset_json(dataset), ctypes.addressof(exported),
                mode.encode(),
            )
        finally:
            release(exported)
        if status != OK:
            raise _error(lib, "writer", "writer_prepare", status, message)

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """Hand the stream to ``writer_write`` (which takes ownership) and parse what it wrote."""
        lib = self.native_library
        exported = ArrowArrayStream()
        stream._export_to_c(ctypes.addressof(exported))
        payload = dumps(split_to_json(split))
        try:
            status, text = lib.call_for_text(
                "writer_write", self._handle.pointer, payload, ctypes.addressof(exported)
            )
        finally:
            release(exported)  # the library should have moved or released it; never leak it
        if status != OK:
            raise _error(lib, "writer", "writer_write", status, text,
                         where=f"dataset '{split.dataset}' split '{split.id}': ")
        value = _json(lib, "writer", "writer_write", text, dict)
        try:
            return written_from_json({**value, "dataset": split.dataset, "split": split.id})
        except ValueError as exc:
            problem = f"returned a result that is not valid: {exc}"
            raise _invalid(lib, "writer", "writer_write", problem) from None

    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """Publish everything with ``writer_commit``."""
        lib = self.native_library
        status, text = lib.call_for_text(
            "writer_commit", self._handle.pointer, _dataset_json(dataset), dumps([vars(w) for w in files]),
            dumps(state), run_id.encode(),
        )
        if status != OK:
            raise _error(lib, "writer", "writer_commit", status, text)
        try:
            return commit_from_json(json.loads(text or ""))
        except (ValueError, RecursionError):  # it did publish; only its description is broken
            raise commit_error(
                f"{lib.symbol('writer_commit')}() returned OK with an invalid description: {text!r:.200}",
                hint=f'Return {{"commit_id": ..., "rows": ..., "no_op": ...}}; rerun with --run-id {run_id} '
                "to settle it.",
            ) from None

    def abort(self, files: list[WrittenFiles]) -> None:
        """Call ``writer_abort`` if the library exports it."""
        lib = self.native_library
        if "writer_abort" not in lib.functions:
            return
        status, message = lib.call("writer_abort", self._handle.pointer, dumps([vars(w) for w in files]))
        if status != OK:
            raise _error(lib, "writer", "writer_abort", status, message)


def library(
    path: str | os.PathLike[str],
    *,
    role: Role = "reader",
    symbol_prefix: str = DEFAULT_PREFIX,
    name: str | None = None,
) -> type[NativeReader] | type[NativeWriter]:
    """Load a native plugin library and return a new Reader (or Writer) class that drives it.

    The operating system loads a file once per process (and ctypes never unloads it), so a second call costs
    little; each returns its own class. Whoever uses one holds on to it (a run's host, a package's module).

    Args:
        path: The ``.so`` / ``.dylib`` file.
        role: ``reader`` or ``writer``.
        symbol_prefix: Prefix of the library's exported functions.
        name: How messages name it (default: ``path`` as given).

    Returns:
        A subclass of :class:`NativeReader` or :class:`NativeWriter`, with the library's version and language;
        its ``Config`` checks the options the library declares (``plugin_config_schema``), if it does.

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
    lib = Library(file, name=shown, prefix=symbol_prefix, role=role)
    base: type = NativeReader if role == "reader" else NativeWriter
    return type(f"{base.__name__}[{file.name}]", (base,), {
        "native_library": lib,
        "version": lib.version,
        "language": lib.language,
        "Config": NativeOptions if lib.config_schema is None else declared(NativeOptions, lib.config_schema),
        "__module__": __name__,
        "__doc__": lib.description or f"The native {role} in {file}.",
    })


__all__ = [
    "ABI_VERSION",
    "DEFAULT_PREFIX",
    "SUPPORTED_ABI_VERSIONS",
    "Library",
    "NativeOptions",
    "NativeReader",
    "NativeWriter",
    "library",
]
