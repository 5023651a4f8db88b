"""Out-of-process plugins, host side: Reader and Writer proxies that speak Arrow Flight to a plugin.

A plugin written in Go, Java, C++ or Rust, or a Python plugin run out of process or in the sandbox, runs in
its own process and serves the protocol of ``docs/plugins/protocol.md``. :func:`plugin_class` makes an
ordinary :class:`dativo.api.Reader` or :class:`dativo.api.Writer` subclass per plugin whose methods are
that protocol's calls, so the engine, fallback and reports treat it like any other plugin:

- every contract method is a ``DoAction`` with a JSON body, bounded by ``call_timeout_s``;
- ``read(split)`` is a ``DoGet`` returning a streamed ``pyarrow.RecordBatchReader``, ``write(split, stream)``
  a ``DoPut`` streaming the batches; a plugin that sends or takes nothing for ``stall_timeout_s`` while the
  host waits on it is declared hung;
- a ``DATIVO-ERROR {json}`` line in a Flight error becomes the matching :mod:`dativo.errors` class; any
  other failure becomes :class:`~dativo.errors.PluginFailed` with the plugin process's exit status and the
  last (redacted) lines of its stderr.

How the plugin is reached (started by the host, or already running) is a :class:`Launcher`, implemented in
:mod:`dativo.plugins.process`. The JSON shapes of the protocol live here too, shared with the Python
server (:mod:`dativo.plugins.serve`).
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import queue
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import pyarrow as pa
import pyarrow.flight as fl
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
    SchemaMismatch,
)

PROTOCOL_VERSION = 1
"""The version of ``docs/plugins/protocol.md`` this Dativo speaks (``dativo_flight`` in the handshake)."""
ERROR_PREFIX = "DATIVO-ERROR "
ERROR_KINDS: dict[str, type[DativoError]] = {
    "ConfigError": ConfigError,
    "ConnectionFailed": ConnectionFailed,
    "PluginFailed": PluginFailed,
    "SchemaMismatch": SchemaMismatch,
    "CommitFailed": CommitFailed,
    "CommitStateUnknown": CommitStateUnknown,
}
"""The error kinds a plugin may report, and the class the host raises for each."""

DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_STALL_TIMEOUT_S = 300.0
SHUTDOWN_TIMEOUT_S = 5.0
_PARK_S = 30.0  # how long a connection opened to learn a plugin's spec waits for the instance that uses it
_FAILURE_TTL_S = 30.0  # a plugin that just failed to start is not started again for the fallback check
_POLL_S = 0.25

Role = Literal["reader", "writer"]
_STAGES = {"health": "load", "spec": "load", "configure": "load"}
log = logging.getLogger("dativo.plugins.flight")


# --- the wire format (shared with dativo.plugins.serve) ---------------------------------------------------


def dumps(value: Any) -> bytes:
    """One protocol JSON document, UTF-8."""
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse a JSON object (an empty body is ``{}``).

    Raises:
        ValueError: Naming ``what`` when it is not a JSON object.
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a JSON {type(value).__name__}, not an object: {text[:200]!r}")
    return value


def schema_to_b64(schema: pa.Schema) -> str:
    """An Arrow schema as base64 of its IPC schema message."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_b64(text: str) -> pa.Schema:
    """The inverse of :func:`schema_to_b64` (also reads Go's ``flight.SerializeSchema``)."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def dataset_to_json(dataset: Dataset) -> dict[str, Any]:
    """``{"name", "schema", "primary_key", "cursor_candidates"}``."""
    return {
        "name": dataset.name,
        "schema": None if dataset.schema is None else schema_to_b64(dataset.schema),
        "primary_key": list(dataset.primary_key),
        "cursor_candidates": list(dataset.cursor_candidates),
    }


def dataset_from_json(value: Any) -> Dataset:
    """Raises ``ValueError`` if ``value`` is not a protocol dataset."""
    if not (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and value["name"]
        and _strings(value.get("primary_key") or [])
        and _strings(value.get("cursor_candidates") or [])
        and isinstance(value.get("schema"), str | None)
    ):
        raise ValueError(
            f'{json.dumps(value, default=str)[:200]} is not {{"name": str, "schema": base64 | null, '
            '"primary_key": [str], "cursor_candidates": [str]}'
        )
    try:
        schema = None if value.get("schema") is None else schema_from_b64(value["schema"])
    except (ValueError, pa.ArrowException) as exc:
        raise ValueError(f"dataset '{value['name']}' has an unreadable schema: {exc}") from None
    return Dataset(
        name=value["name"],
        schema=schema,
        primary_key=tuple(value.get("primary_key") or ()),
        cursor_candidates=tuple(value.get("cursor_candidates") or ()),
    )


def split_to_json(split: Split) -> dict[str, Any]:
    """``{"dataset", "id", "params"}``."""
    return {"dataset": split.dataset, "id": split.id, "params": dict(split.params)}


def split_from_json(value: Any) -> Split:
    """Raises ``ValueError`` if ``value`` is not a protocol split."""
    if not (
        isinstance(value, dict)
        and isinstance(value.get("dataset"), str)
        and isinstance(value.get("id", "0"), str | int)
        and isinstance(value.get("params") or {}, dict)
    ):
        raise ValueError(
            f'{json.dumps(value, default=str)[:200]} is not {{"dataset": str, "id": str, "params": {{...}}}}'
        )
    return Split(value["dataset"], str(value.get("id", "0")), value.get("params") or {})


def json_safe(extra: dict[str, Any]) -> dict[str, Any]:
    """The entries of a writer's ``extra`` that survive JSON; the rest cannot cross a process boundary."""
    kept = {}
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue  # e.g. pyiceberg DataFile objects: the writer rebuilds them from the files' footers
        kept[key] = value
    return kept


def written_to_json(written: WrittenFiles) -> dict[str, Any]:
    """``{"dataset", "split", "files", "rows", "bytes", "extra"}`` (``extra`` reduced to its JSON part)."""
    return {
        "dataset": written.dataset,
        "split": written.split,
        "files": list(written.files),
        "rows": written.rows,
        "bytes": written.bytes,
        "extra": json_safe(written.extra),
    }


def written_from_json(value: Any, *, dataset: str = "", split: str = "") -> WrittenFiles:
    """Raises ``ValueError`` if ``value`` is not a protocol ``written``."""
    if not (
        isinstance(value, dict)
        and _strings(value.get("files") or [])
        and isinstance(value.get("rows", 0), int)
        and isinstance(value.get("bytes", 0), int)
        and isinstance(value.get("extra") or {}, dict)
    ):
        raise ValueError(
            f'{json.dumps(value, default=str)[:200]} is not {{"dataset": str, "split": str, "files": [str], '
            '"rows": int, "bytes": int, "extra": {...}}'
        )
    return WrittenFiles(
        dataset=str(value.get("dataset") or dataset),
        split=str(value.get("split") or split),
        files=list(value.get("files") or []),
        rows=int(value.get("rows", 0)),
        bytes=int(value.get("bytes", 0)),
        extra=dict(value.get("extra") or {}),
    )


def error_line(kind: str, message: str, hint: str | None = None) -> str:
    """The ``DATIVO-ERROR {json}`` line a plugin puts in a failing call's Flight error message."""
    body = {"kind": kind if kind in ERROR_KINDS else "PluginFailed", "message": message, "hint": hint}
    return ERROR_PREFIX + json.dumps(body, ensure_ascii=True)  # ASCII and one line, whatever the message


def parse_error(text: str) -> dict[str, Any] | None:
    """The ``{"kind", "message", "hint"}`` of a ``DATIVO-ERROR`` line in ``text``, or ``None``.

    gRPC appends its own details after the message (``. Detail: …``), so the JSON is decoded from where it
    starts and whatever follows it is ignored.
    """
    at = text.find(ERROR_PREFIX.strip())
    if at < 0:
        return None
    start = text.find("{", at)
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("message"), str):
        return None
    return value


def _short(exc: BaseException) -> str:
    """A Flight/gRPC error message without its debug context."""
    text = str(exc) or type(exc).__name__
    for marker in (". gRPC client debug context", ". Detail:", "\ngRPC client debug context"):
        text = text.split(marker, 1)[0]
    text = text.replace("Flight returned ", "").replace(", with message:", ":")
    return text.strip()[:400]


def _fix(role: str) -> str:
    side = "source.reader" if role == "reader" else "target.writer"
    return f"Fix the plugin, or set {side}.fallback: default to use the built-in {role}."


def _setting(role: str, key: str) -> str:
    side = "source.reader" if role == "reader" else "target.writer"
    return f"{side}.implementation.{key}"


# --- reaching a plugin ------------------------------------------------------------------------------------


class PluginProcessLike(Protocol):
    """What a connection needs of the process behind it (:class:`dativo.plugins.process.PluginProcess`)."""

    logger: logging.Logger

    def alive(self) -> bool: ...

    def diagnose(self, wait_s: float = ...) -> str: ...

    def kill(self) -> None: ...

    def stop(self, shutdown: Callable[[], None] | None) -> None: ...


class Launcher(ABC):
    """How to reach one plugin: start its process, or connect to one that runs already.

    Attributes:
        name: How the job names the plugin (for messages and reports).
        origin: ``process`` or ``flight`` (or ``entry point`` for a packaged executable).
        call_timeout_s: Deadline of every action.
        stall_timeout_s: Longest wait for the next batch (or the plugin's acceptance of one) on a data stream.
        start_timeout_s: Longest wait from start to a healthy plugin.
    """

    name: str
    origin: str = "process"
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    start_timeout_s: float = 10.0

    @abstractmethod
    def start(self, role: Role, logger: logging.Logger) -> tuple[str, PluginProcessLike | None]:
        """Start (or find) the plugin.

        Returns:
            Its Flight location, and its process if this host owns it (``None`` for a running plugin).

        Raises:
            PluginNotFound: The executable does not exist.
            PluginIncompatible: It speaks another protocol version.
            PluginFailed: It did not start, or its handshake is missing or invalid.
        """


@dataclass
class _Busy:
    """When the stream's current blocking Flight call started (``None``: not waiting on the plugin)."""

    since: float | None = None

    def __enter__(self) -> None:
        self.since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.since = None

    def stalled(self, limit: float) -> bool:
        since = self.since
        return since is not None and time.monotonic() - since > limit


_END = object()


class Connection:
    """A Flight client to one plugin, with deadlines, stall detection and error translation.

    Args:
        launcher: How to reach the plugin.
        role: The role it is used for.
        logger: Where the plugin's output goes (the job's logger for the plugin).
        job: The job's name, for messages (when known).

    Raises:
        DativoError: The plugin did not start or is not healthy; a process it started is stopped again.
    """

    def __init__(
        self, launcher: Launcher, role: Role, logger: logging.Logger, *, job: str | None = None
    ) -> None:
        self.launcher = launcher
        self.role = role
        self.job = job
        self.name = launcher.name
        self._broken: str | None = None
        self._abandoned = False  # a stream thread is stuck in a call to a plugin we cannot kill
        self._closed = False
        self._streams: weakref.WeakSet[_GetStream] = weakref.WeakSet()  # reads the engine may have dropped
        location, self.process = launcher.start(role, logger)
        self.location = location
        try:
            self.client = fl.FlightClient(location)
            health = self.action("health", timeout=max(launcher.start_timeout_s, 1.0))
            spoken = health.get("dativo_flight", PROTOCOL_VERSION)
            if spoken != PROTOCOL_VERSION:
                raise PluginIncompatible(
                    f"the plugin at {location} speaks plugin protocol {spoken}, but this Dativo speaks "
                    f"protocol {PROTOCOL_VERSION}",
                    plugin=self.name,
                    job=job,
                    hint=f"Use a build of the plugin for protocol {PROTOCOL_VERSION}, or a Dativo that "
                    f"speaks protocol {spoken}.",
                )
        except BaseException:
            self._kill()
            raise

    # --- errors ---------------------------------------------------------------------------------------------

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def _diagnosis(self) -> str:
        if self.process is None:
            return f"is the plugin at {self.location} still running?"
        return self.process.diagnose()

    def _context(self, exc: DativoError, stage: str) -> DativoError:
        exc.role = exc.role or self.role
        exc.stage = exc.stage or stage
        return exc.with_context(job=self.job, plugin=self.name)

    def _from_plugin(self, info: dict[str, Any], stage: str, where: str) -> DativoError:
        """The error a plugin reported in a ``DATIVO-ERROR`` line."""
        kind = str(info.get("kind") or "PluginFailed")
        message = f"{where}{info['message']}"
        hint = info.get("hint") if isinstance(info.get("hint"), str) and info.get("hint") else None
        cls = ERROR_KINDS.get(kind, PluginFailed)
        if kind not in ERROR_KINDS:
            message = f"{message} (unknown error kind '{kind}')"
        if stage == "commit" and cls not in (CommitFailed, CommitStateUnknown):
            cls = CommitStateUnknown  # as in process: a commit that failed otherwise may have published
        if cls is CommitStateUnknown:
            hint = hint or "Check the target, then rerun with the same --run-id: a committed run is a no-op."
        elif cls is CommitFailed:
            hint = hint or "Nothing was published; the run can be retried."
        if issubclass(cls, PluginFailed):
            error: DativoError = cls(message, role=self.role, stage=stage, hint=hint or _fix(self.role))
        else:
            error = cls(message, hint=hint)
        return self._context(error, stage)

    def failure(self, exc: BaseException, stage: str, where: str = "") -> DativoError:
        """Translate a failed Flight call into the error the user should see."""
        if isinstance(exc, DativoError):
            return self._context(exc, stage)
        info = parse_error(str(exc))
        if info is not None:
            return self._from_plugin(info, stage, where)
        diagnosis = self._diagnosis()
        dead = self.process is not None and not self.process.alive()
        if dead or isinstance(exc, fl.FlightUnavailableError):
            self._broken = self._broken or f"its connection broke ({_short(exc)}); {diagnosis}"
        message = f"{where}{stage}() failed: {_short(exc)}; {diagnosis}"
        if stage == "commit":  # the plugin may have published before it failed: nobody knows
            return self._context(
                CommitStateUnknown(
                    message,
                    hint="Check the target, then rerun with the same --run-id: a committed run is a no-op.",
                ),
                stage,
            )
        return self._context(PluginFailed(message, role=self.role, stage=stage, hint=_fix(self.role)), stage)

    def _hung(self, stage: str, what: str, seconds: float, key: str) -> DativoError:
        """The plugin stopped answering: it is killed (if ours), and the connection is not used again."""
        self._broken = f"it stopped answering during {stage}()"
        if self.process is not None:
            self.process.kill()
        diagnosis = self._diagnosis()
        ended = "stopped" if self.process is not None else "its call cancelled"
        message = f"{what} for {seconds:g} s, so it was declared hung and {ended}; {diagnosis}"
        hint = f"Fix the plugin, or raise {_setting(self.role, key)} if it is only slow. {_fix(self.role)}"
        if stage == "commit":
            return self._context(
                CommitStateUnknown(
                    message,
                    hint="Check the target, then rerun with the same --run-id: a committed run is a no-op.",
                ),
                stage,
            )
        return self._context(PluginFailed(message, role=self.role, stage=stage, hint=hint), stage)

    def _usable(self, stage: str) -> None:
        if self._broken is not None:
            raise self._context(
                PluginFailed(
                    f"{stage}() cannot be called: the plugin is unusable since {self._broken}",
                    role=self.role,
                    stage=stage,
                    hint=_fix(self.role),
                ),
                stage,
            )

    @property
    def usable(self) -> bool:
        """Whether the plugin can still be called (it did not die, hang or get closed)."""
        return self._broken is None and not self._closed

    # --- calls ----------------------------------------------------------------------------------------------

    def action(
        self, kind: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call one action and return its JSON result (``{}`` for an empty result).

        Raises:
            DativoError: What the plugin reported, or PluginFailed (CommitStateUnknown for ``commit``).
        """
        stage = _STAGES.get(kind, kind)
        self._usable(stage)
        limit = self.launcher.call_timeout_s if timeout is None else timeout
        options = fl.FlightCallOptions(timeout=limit)
        try:
            results = [
                r.body.to_pybytes()
                for r in self.client.do_action(fl.Action(kind, dumps(body or {})), options)
            ]
        except fl.FlightTimedOutError:
            raise self._hung(stage, f"the plugin did not answer '{kind}'", limit, "call_timeout_s") from None
        except (pa.ArrowException, OSError) as exc:  # every FlightError is an ArrowException
            raise self.failure(exc, stage) from None
        try:
            return loads_object(results[0] if results else b"", f"the result of '{kind}'")
        except ValueError as exc:
            raise self._context(
                PluginFailed(
                    f"the plugin answered '{kind}' with something else than the protocol says: {exc}",
                    role=self.role,
                    stage=stage,
                    hint=f"Fix the plugin (see docs/plugins/protocol.md). {_fix(self.role)}",
                ),
                stage,
            ) from None

    def invalid(self, kind: str, problem: str) -> PluginFailed:
        """A result that does not follow the protocol."""
        stage = _STAGES.get(kind, kind)
        error = PluginFailed(
            f"the plugin's answer to '{kind}' {problem}",
            role=self.role,
            stage=stage,
            hint=f"Fix the plugin (see docs/plugins/protocol.md). {_fix(self.role)}",
        )
        return self._context(error, stage)  # type: ignore[return-value]

    def read(self, split: Split) -> pa.RecordBatchReader:
        """``DoGet`` one split: returns as soon as the stream's schema arrived; batches stream on demand."""
        self._usable("read")
        stream = _GetStream(self, split)
        self._streams.add(stream)
        try:
            schema = stream.schema()
        except BaseException:
            stream.close()
            raise
        return pa.RecordBatchReader.from_batches(schema, stream.batches())

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """``DoPut`` one split's batches and return what the plugin wrote."""
        self._usable("write")
        return _PutStream(self, split, stream).run()

    def on_stall(self, cancel: Callable[[], None] | None) -> None:
        """Unblock a stream whose plugin stopped answering: kill the process we own, or cancel the call."""
        if self.process is not None:
            self.process.kill()
        elif cancel is not None:
            try:
                cancel()
            except Exception:  # the stream may be gone already
                pass
        else:
            self._abandoned = True  # pyarrow cannot cancel a DoPut: its thread waits for the plugin

    def close(self, *, shutdown: bool) -> None:
        """Stop using the plugin; with ``shutdown``, end the process we started (``shutdown``, TERM, KILL)."""
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):  # a reader dropped before its first batch never closes its stream
            stream.close()
        if self.process is not None:
            ask = None
            if shutdown and self._broken is None:
                ask = lambda: self.action("shutdown", timeout=SHUTDOWN_TIMEOUT_S)  # noqa: E731
            self.process.stop(ask)
        if not self._abandoned:  # closing waits for calls in flight, which may never end
            try:
                self.client.close()
            except Exception:  # nothing left to tell anyone
                pass


class _GetStream:
    """One ``DoGet``: a thread reads the plugin's batches a little ahead; the consumer waits, checking stalls.

    The thread keeps the consumer's wait interruptible: pyarrow can cancel a ``DoGet`` (and we can kill a
    process we own), but a plain blocking read could not notice that the plugin stopped sending.
    """

    def __init__(self, conn: Connection, split: Split) -> None:
        self.conn = conn
        self.split = split
        self.where = f"dataset '{split.dataset}' split '{split.id}': "
        self.busy = _Busy()
        self.items: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.reader: fl.FlightStreamReader | None = None
        self.finished = False
        self.stalled = False
        ticket = fl.Ticket(dumps({"split": split_to_json(split)}))
        self.thread = threading.Thread(
            target=self._run, args=(ticket,), name="dativo-flight-get", daemon=True
        )
        self.thread.start()

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self, ticket: fl.Ticket) -> None:
        try:
            with self.busy:
                self.reader = self.conn.client.do_get(ticket)
                schema = self.reader.schema
            self._put(("schema", schema))
            while not self.stop.is_set():
                with self.busy:
                    try:
                        chunk = self.reader.read_chunk()
                    except StopIteration:
                        self._put(_END)
                        return
                if chunk.data is not None:
                    self._put(chunk.data)
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            self._put(exc)

    def _next(self) -> Any:
        limit = self.conn.launcher.stall_timeout_s
        while True:
            try:
                item = self.items.get(timeout=_POLL_S)
            except queue.Empty:
                if self.busy.stalled(limit):
                    self.stalled = True
                    self.conn.on_stall(self.reader.cancel if self.reader is not None else None)
                    raise self.conn._hung(
                        "read", f"{self.where}the plugin sent nothing", limit, "stall_timeout_s"
                    ) from None
                if not self.thread.is_alive() and self.items.empty():
                    raise self.conn.failure(
                        RuntimeError("the stream ended without an end"), "read", self.where
                    )
                continue
            if isinstance(item, BaseException):
                raise self.conn.failure(item, "read", self.where) from None
            return item

    def schema(self) -> pa.Schema:
        item = self._next()
        if item is _END or not (isinstance(item, tuple) and item[0] == "schema"):
            raise self.conn.invalid("read", "did not start with a schema")
        return item[1]

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            while True:
                item = self._next()
                if item is _END:
                    self.finished = True
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading; a stream the consumer abandoned is cancelled so the plugin stops sending."""
        self.stop.set()
        if not self.finished and self.reader is not None and not self.stalled:
            try:
                self.reader.cancel()
            except Exception:  # already finished or broken
                pass
        self.thread.join(timeout=5)


class _PutStream:
    """One ``DoPut``: a thread pulls the engine's batches and sends them; the caller waits with a stall check.

    The stall check only counts time spent waiting on the plugin (sending, or waiting for its result), never
    time spent waiting on the source. If the source fails, the plugin is told with an ``{"abort": true}``
    metadata message before the stream ends, so it does not mistake a broken split for a complete one.
    """

    def __init__(self, conn: Connection, split: Split, stream: pa.RecordBatchReader) -> None:
        self.conn = conn
        self.split = split
        self.stream = stream
        self.where = f"dataset '{split.dataset}' split '{split.id}': "
        self.busy = _Busy()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.source_error: BaseException | None = None

    def _send(self) -> None:
        descriptor = fl.FlightDescriptor.for_command(dumps({"split": split_to_json(self.split)}))
        with self.busy:
            writer, results = self.conn.client.do_put(descriptor, self.stream.schema)
        errors: list[BaseException] = []
        try:
            batches = iter(self.stream)
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except BaseException as exc:  # the source's failure, not the plugin's
                    self.source_error = exc
                    break
                with self.busy:
                    writer.write_batch(batch)
            with self.busy:
                if self.source_error is not None:
                    writer.write_metadata(dumps({"abort": True}))
                writer.done_writing()
                self.result = results.read()
        except (pa.ArrowException, OSError) as exc:
            errors.append(exc)
        try:
            with self.busy:
                writer.close()  # also where the plugin's own final status arrives
        except (pa.ArrowException, OSError) as exc:
            errors.append(exc)
        # an abandoned split (source_error) is refused by the plugin, as it should be: not an error
        if errors and self.source_error is None:
            raise next((e for e in errors if parse_error(str(e)) is not None), errors[0])

    def _run(self) -> None:
        try:
            self._send()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def run(self) -> WrittenFiles:
        thread = threading.Thread(target=self._run, name="dativo-flight-put", daemon=True)
        thread.start()
        limit = self.conn.launcher.stall_timeout_s
        while not self.done.wait(_POLL_S):
            if self.busy.stalled(limit):
                self.conn.on_stall(None)
                raise self.conn._hung(
                    "write",
                    f"{self.where}the plugin took no data and gave no answer",
                    limit,
                    "stall_timeout_s",
                )
        thread.join()
        if self.source_error is not None:
            raise self.source_error
        if self.error is not None:
            raise self.conn.failure(self.error, "write", self.where) from None
        if self.result is None:
            raise self.conn.invalid("write", f"({self.where.removesuffix(': ')}) ended without a PutResult")
        try:
            value = json.loads(self.result.to_pybytes().decode("utf-8", "replace"))
            return written_from_json(value, dataset=self.split.dataset, split=self.split.id)
        except ValueError as exc:
            raise self.conn.invalid("write", f"is not a protocol 'written': {exc}") from None


# --- the proxies ------------------------------------------------------------------------------------------


class RemoteOptions(BaseModel):
    """Options of an out-of-process plugin: anything; the plugin validates them in ``configure``.

    ``dativo plugins info`` shows the JSON Schema the plugin published in its ``spec``.
    """

    model_config = ConfigDict(extra="allow")

    plugin_schema: ClassVar[dict[str, Any] | None] = None

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The plugin's own ``config_schema`` when it published one."""
        if cls.plugin_schema is not None:
            return cls.plugin_schema
        return super().model_json_schema(*args, **kwargs)


class RemotePlugin:
    """What the Reader and Writer proxies share: the launcher, the connection, and the plugin's spec.

    One subclass per plugin (see :func:`plugin_class`) holds class-level state: the spec learnt from the
    plugin (so ``version``, ``language``, ``api_version`` and ``allow_fallback`` are the plugin's own), a
    connection opened to learn it that the first instance adopts, and a recent start failure.
    """

    launcher: ClassVar[Launcher]
    role: ClassVar[Role]
    Config: ClassVar[type[BaseModel]] = RemoteOptions
    language: ClassVar[str] = "unknown"
    plugin_spec: ClassVar[dict[str, Any] | None] = None
    _lock: ClassVar[threading.Lock]
    _parked: ClassVar[tuple[Connection, threading.Timer] | None] = None
    _failure: ClassVar[tuple[float, DativoError] | None] = None

    # --- the class: spec, parked connection -----------------------------------------------------------------

    @classmethod
    def _logger(cls) -> logging.Logger:
        return logging.getLogger(f"dativo.{cls.role}.{cls.launcher.name}")

    @classmethod
    def describe(cls) -> None:
        """Learn the plugin's spec once (the registry calls this before validating the class).

        The connection opened for it is kept for the first instance, so a job starts its plugin once.

        Raises:
            DativoError: The plugin cannot be started, or it does not offer this role.
        """
        with cls._lock:
            if cls.plugin_spec is not None:
                return
            if cls._failure is not None and time.monotonic() - cls._failure[0] < _FAILURE_TTL_S:
                raise copy.copy(cls._failure[1])  # the engine rewrites messages; keep the original intact
            try:
                conn = Connection(cls.launcher, cls.role, cls._logger())
                try:
                    cls._apply(conn, conn.action("spec", {"role": cls.role}))
                except BaseException:
                    conn.close(shutdown=True)
                    raise
            except DativoError as exc:
                cls._failure = (time.monotonic(), copy.copy(exc))
                raise
            cls._failure = None
            timer = threading.Timer(_PARK_S, cls._expire, args=(conn,))
            timer.daemon = True
            cls._parked = (conn, timer)
            timer.start()

    @classmethod
    def _expire(cls, conn: Connection) -> None:
        with cls._lock:
            if cls._parked is None or cls._parked[0] is not conn:
                return
            cls._parked = None
        conn.close(shutdown=True)

    @classmethod
    def discard(cls) -> None:
        """Stop the plugin that :meth:`describe` started, if no instance took it (the class was refused)."""
        conn = cls._adopt()
        if conn is not None:
            conn.close(shutdown=True)

    @classmethod
    def _adopt(cls) -> Connection | None:
        with cls._lock:
            parked, cls._parked = cls._parked, None
        if parked is None:
            return None
        conn, timer = parked
        timer.cancel()
        if conn.usable and (conn.process is None or conn.process.alive()):
            return conn
        conn.close(shutdown=True)
        return None

    @classmethod
    def _apply(cls, conn: Connection, spec: dict[str, Any]) -> None:
        """Check a ``spec`` result and take the plugin's identity from it."""
        roles = spec.get("roles")
        checks = {
            "name": isinstance(spec.get("name", ""), str),
            "version": isinstance(spec.get("version", ""), str),
            "language": isinstance(spec.get("language", ""), str),
            "roles": _strings(roles),
            "api_version": isinstance(spec.get("api_version", ""), str),
            "config_schema": isinstance(spec.get("config_schema"), dict | None),
            "allow_fallback": isinstance(spec.get("allow_fallback", True), bool),
        }
        bad = [key for key, ok in checks.items() if not ok]
        if bad:
            raise conn.invalid("spec", f"has invalid or missing {', '.join(bad)}: {json.dumps(spec)[:300]}")
        if cls.role not in roles:  # type: ignore[operator]
            side = "source.reader" if cls.role == "reader" else "target.writer"
            offers = " and ".join(roles) or "plugin of no role"  # type: ignore[arg-type]
            raise PluginIncompatible(
                f"the plugin is a {offers} (its spec says roles: {roles}), so it cannot be the {cls.role}",
                plugin=cls.launcher.name,
                hint=f"Name a plugin that implements a {cls.role} in {side}.implementation.",
            )
        cls.plugin_spec = spec
        if spec.get("version"):
            cls.version = spec["version"]  # type: ignore[misc]
        cls.language = spec.get("language") or "unknown"  # type: ignore[misc]
        if spec.get("api_version"):
            cls.api_version = spec["api_version"]  # type: ignore[misc]
        cls.allow_fallback = bool(spec.get("allow_fallback", True))  # type: ignore[misc]
        cls.Config.plugin_schema = spec.get("config_schema")  # type: ignore[attr-defined]

    # --- an instance: one configured plugin -----------------------------------------------------------------

    def _open(self, config: BaseModel, ctx: Context) -> Connection:
        cls = type(self)
        conn = cls._adopt()
        if conn is None:
            conn = Connection(cls.launcher, cls.role, ctx.logger, job=ctx.job)
            adopted = False
        else:
            adopted = True
            if conn.process is not None:
                conn.process.logger = ctx.logger
        conn.job = ctx.job
        try:
            if not adopted:
                cls._apply(conn, conn.action("spec", {"role": cls.role}))
            conn.action(
                "configure",
                {
                    "role": cls.role,
                    "options": config.model_dump(),
                    "settings": dict(ctx.settings),
                    "context": {
                        "job": ctx.job,
                        "run_id": ctx.run_id,
                        "plugin": ctx.plugin,
                        "parallelism": ctx.parallelism,
                        "cursor": ctx.cursor,
                        "work_dir": ctx.work_dir,
                    },
                },
            )
        except BaseException as exc:
            conn.close(shutdown=True)
            if isinstance(exc, DativoError):
                raise exc.with_context(job=ctx.job, plugin=ctx.plugin) from None
            raise
        return conn

    def check(self) -> None:
        """The plugin's ``check``."""
        self._conn.action("check", {"role": self.role})

    def close(self) -> None:
        """The plugin's ``close``; then the process is shut down (a running plugin is left running)."""
        conn = self._conn
        if conn.usable:
            try:
                conn.action("close", {"role": self.role})
            except DativoError as exc:  # the run's own outcome matters more
                log.debug("close() of %s failed: %s", self.launcher.name, exc)
        conn.close(shutdown=True)


class FlightReader(RemotePlugin, Reader):
    """A reader served by a plugin process; :func:`plugin_class` makes one subclass per plugin."""

    role: ClassVar[Role] = "reader"

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._conn = self._open(config, ctx)

    def discover(self) -> list[Dataset]:
        """The plugin's ``discover``."""
        result = self._conn.action("discover")
        entries = result.get("datasets")
        if not isinstance(entries, list):
            raise self._conn.invalid("discover", f'has no "datasets" list: {json.dumps(result)[:200]}')
        try:
            return [dataset_from_json(entry) for entry in entries]
        except ValueError as exc:
            raise self._conn.invalid("discover", f"lists a dataset {exc}") from None

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """The plugin's ``plan``."""
        result = self._conn.action("plan", {"dataset": dataset_to_json(dataset), "state": state})
        entries = result.get("splits")
        if not isinstance(entries, list):
            raise self._conn.invalid("plan", f'has no "splits" list: {json.dumps(result)[:200]}')
        try:
            splits = [
                split_from_json({"dataset": dataset.name, **entry} if isinstance(entry, dict) else entry)
                for entry in entries
            ]
        except ValueError as exc:
            raise self._conn.invalid("plan", f"lists a split {exc}") from None
        if len({s.id for s in splits}) != len(splits):
            raise self._conn.invalid("plan", "lists splits with duplicate ids")
        return splits

    def read(self, split: Split) -> pa.RecordBatchReader:
        """``DoGet`` the split; the batches stream as the engine pulls them."""
        return self._conn.read(split)


class FlightWriter(RemotePlugin, Writer):
    """A writer served by a plugin process; :func:`plugin_class` makes one subclass per plugin."""

    role: ClassVar[Role] = "writer"

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._conn = self._open(config, ctx)

    def state(self, dataset: Dataset) -> State | None:
        """The plugin's ``state``."""
        result = self._conn.action("state", {"dataset": dataset_to_json(dataset)})
        state = result.get("state")
        if state is not None and not isinstance(state, dict):
            raise self._conn.invalid(
                "state", f"has a state that is not an object: {json.dumps(result)[:200]}"
            )
        return state

    def prepare(self, dataset: Dataset, schema: pa.Schema, mode: Mode) -> None:
        """The plugin's ``prepare``."""
        self._conn.action(
            "prepare", {"dataset": dataset_to_json(dataset), "schema": schema_to_b64(schema), "mode": mode}
        )

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """``DoPut`` the split's batches; the plugin answers with what it wrote."""
        return self._conn.write(split, stream)

    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """The plugin's ``commit``."""
        result = self._conn.action(
            "commit",
            {
                "dataset": dataset_to_json(dataset),
                "files": [written_to_json(w) for w in files],
                "state": state,
                "run_id": run_id,
            },
        )
        commit_id, rows = result.get("commit_id"), result.get("rows", 0)
        if not isinstance(rows, int) or not isinstance(result.get("no_op", False), bool):
            raise CommitStateUnknown(  # it did answer OK: only its description is broken
                f'the plugin\'s answer to \'commit\' is not {{"commit_id", "rows", "no_op"}}: '
                f"{json.dumps(result)[:200]}",
                job=self.ctx.job,
                plugin=self.ctx.plugin,
                hint=f"Fix the plugin; rerun with --run-id {run_id} to settle it.",
            )
        return CommitInfo(
            None if commit_id is None else str(commit_id), rows, bool(result.get("no_op", False))
        )

    def abort(self, files: list[WrittenFiles]) -> None:
        """The plugin's ``abort``."""
        self._conn.action("abort", {"files": [written_to_json(w) for w in files]})


def plugin_class(
    role: Role, launcher: Launcher, *, doc: str | None = None
) -> type[FlightReader] | type[FlightWriter]:
    """Make the Reader (or Writer) class of one out-of-process plugin.

    Creating the class starts nothing; :meth:`RemotePlugin.describe` (called by the registry) or the first
    instance does.

    Args:
        role: ``reader`` or ``writer``.
        launcher: How to start or reach the plugin.
        doc: The class's docstring.
    """
    if role not in ("reader", "writer"):
        raise ValueError(f"role must be 'reader' or 'writer', not {role!r}")
    base: type = FlightReader if role == "reader" else FlightWriter
    options = type("Options", (RemoteOptions,), {"__module__": __name__, "__doc__": RemoteOptions.__doc__})
    return type(
        f"{base.__name__}[{launcher.name}]",
        (base,),
        {
            "launcher": launcher,
            "Config": options,
            "_lock": threading.Lock(),
            "_parked": None,
            "_failure": None,
            "plugin_spec": None,
            "__module__": __name__,
            "__doc__": doc or f"The out-of-process {role} {launcher.name}.",
        },
    )
