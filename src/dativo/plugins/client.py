"""The host's Flight client to one out-of-process plugin: actions, data streams, stalls and errors.

A :class:`Connection` reaches a plugin through a :class:`Launcher` (which starts its process, or names one
that runs already), checks its protocol version, and then offers the protocol's calls:

- :meth:`Connection.action` — one ``DoAction`` with a JSON body, bounded by ``call_timeout_s``;
- :meth:`Connection.read` — a ``DoGet`` as a streamed ``pyarrow.RecordBatchReader``;
- :meth:`Connection.write` — a ``DoPut`` of a split's batches, answered by what the plugin wrote.

A plugin that sends or takes nothing for ``stall_timeout_s`` while the host waits on it is declared hung:
the process is killed (or the call cancelled) and the connection is not used again. Every failure becomes a
:mod:`dativo.errors` class through :func:`~dativo.errors.from_kind` (a ``DATIVO-ERROR`` line) or
``PluginFailed`` / the commit rule of :func:`~dativo.errors.commit_error`, with the process's exit status and,
as the error's ``detail``, the last (redacted) lines of its stderr.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.flight as fl

from dativo.api import Role, Split, WrittenFiles
from dativo.errors import DativoError, PluginFailed, commit_error, fallback_hint, from_kind, side
from dativo.plugins.protocol import (
    ABORT_NOTE,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    dumps,
    loads_object,
    parse_error,
    protocol_mismatch,
    split_command,
    stage_of,
    written_from_json,
)

DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_STALL_TIMEOUT_S = 300.0
SHUTDOWN_TIMEOUT_S = 5.0
_POLL_S = 0.25
_PROTOCOL_HINT = "Fix the plugin (see docs/plugins/protocol.md)."


class PluginProcessLike(Protocol):
    """What a connection needs of the process behind it (:class:`dativo.plugins.process.PluginProcess`)."""

    logger: logging.Logger

    def alive(self) -> bool: ...

    def diagnose(self, wait_s: float = ...) -> str: ...

    def tail_text(self) -> str: ...

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


def _short(exc: BaseException) -> str:
    """A Flight/gRPC error message without its debug context."""
    text = str(exc) or type(exc).__name__
    for marker in (". gRPC client debug context", ". Detail:", "\ngRPC client debug context"):
        text = text.split(marker, 1)[0]
    text = text.replace("Flight returned ", "").replace(", with message:", ":")
    return text.strip()[:400]


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
            self.client = fl.FlightClient(location, generic_options=_options(location))
            health = self.action("health", timeout=max(launcher.start_timeout_s, 1.0))
            spoken = health.get("dativo_flight", PROTOCOL_VERSION)
            mismatch = protocol_mismatch(spoken, f"the plugin at {location}")
            if mismatch is not None:
                raise mismatch.with_context(plugin=self.name, job=job)
        except BaseException:
            self._kill()
            raise

    def adopt(self, *, job: str, logger: logging.Logger) -> None:
        """Hand the connection to the instance of ``job`` that uses it: its messages and log are the job's."""
        self.job = job
        if self.process is not None:
            self.process.logger = logger

    # --- errors ---------------------------------------------------------------------------------------------

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def _diagnosis(self) -> str:
        if self.process is None:
            return f"is the plugin at {self.location} still running?"
        return self.process.diagnose()

    def _context(self, exc: DativoError, stage: str, detail: str | None = None) -> DativoError:
        return exc.with_context(job=self.job, plugin=self.name, role=self.role, stage=stage, detail=detail)

    def _failed(self, message: str, stage: str, hint: str | None = None) -> DativoError:
        """A failure of ``stage``: ``PluginFailed``, or for a commit one whose outcome is unknown.

        Its ``detail`` is the end of the process's stderr (call after :meth:`_diagnosis`, which waits for it).
        """
        detail = self.process.tail_text() if self.process is not None else None
        if stage == "commit":  # the plugin may have published before it failed: nobody knows
            return self._context(commit_error(message), stage, detail)
        return self._context(PluginFailed(message, hint=hint or fallback_hint(self.role)), stage, detail)

    def failure(self, exc: BaseException, stage: str, where: str = "") -> DativoError:
        """Translate a failed Flight call into the error the user should see."""
        if isinstance(exc, DativoError):
            return self._context(exc, stage)
        info = parse_error(str(exc))
        if info is not None:  # the plugin said what went wrong
            hint = info.get("hint") if isinstance(info.get("hint"), str) and info.get("hint") else None
            kind = str(info.get("kind") or "PluginFailed")
            sandbox = self.process.sandbox if self.process is not None else None
            if kind == "ConnectionFailed" and sandbox is not None and sandbox.sandbox.network_hint():
                hint = " ".join(filter(None, [hint, sandbox.sandbox.network_hint()]))
            error = from_kind(kind, f"{where}{info['message']}", role=self.role, stage=stage, hint=hint)
            return self._context(error, stage)
        diagnosis = self._diagnosis()
        dead = self.process is not None and not self.process.alive()
        if dead or isinstance(exc, fl.FlightUnavailableError):
            self._broken = self._broken or f"its connection broke ({_short(exc)}); {diagnosis}"
        return self._failed(f"{where}{stage}() failed: {_short(exc)}; {diagnosis}", stage)

    def _hung(self, stage: str, what: str, seconds: float, key: str) -> DativoError:
        """The plugin stopped answering: it is killed (if ours), and the connection is not used again."""
        self._broken = f"it stopped answering during {stage}()"
        if self.process is not None:
            self.process.kill()
        diagnosis = self._diagnosis()
        ended = "stopped" if self.process is not None else "its call cancelled"
        message = f"{what} for {seconds:g} s, so it was declared hung and {ended}; {diagnosis}"
        setting = f"{side(self.role)}.implementation.{key}"
        return self._failed(
            message,
            stage,
            f"Fix the plugin, or raise {setting} if it is only slow. {fallback_hint(self.role)}",
        )

    def _usable(self, stage: str) -> None:
        if self._broken is not None:
            message = f"{stage}() cannot be called: the plugin is unusable since {self._broken}"
            raise self._context(PluginFailed(message, hint=fallback_hint(self.role)), stage)

    @property
    def usable(self) -> bool:
        """Whether the plugin can still be called (it did not die, hang or get closed)."""
        return self._broken is None and not self._closed and (self.process is None or self.process.alive())

    def invalid(self, kind: str, problem: str) -> DativoError:
        """A result that does not follow the protocol."""
        return self._invalid(f"the plugin's answer to '{kind}' {problem}", stage_of(kind))

    def _invalid(self, message: str, stage: str) -> DativoError:
        return self._context(
            PluginFailed(message, hint=f"{_PROTOCOL_HINT} {fallback_hint(self.role)}"), stage
        )

    # --- calls ----------------------------------------------------------------------------------------------

    def action(
        self, kind: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call one action and return its JSON result (``{}`` for an empty result).

        Raises:
            DativoError: What the plugin reported, or PluginFailed (CommitStateUnknown for ``commit``).
        """
        stage = stage_of(kind)
        self._usable(stage)
        limit = self.launcher.call_timeout_s if timeout is None else timeout
        options = fl.FlightCallOptions(timeout=limit)
        try:
            results = self.client.do_action(fl.Action(kind, dumps(body or {})), options)
            first = next(iter(results), None)  # the protocol answers with one result: any more are not read
            size = 0 if first is None else first.body.size
            if size > MAX_MESSAGE_BYTES:  # refused before it is copied or parsed
                raise self._invalid(f"the plugin answered '{kind}' with {size / 2**20:,.0f} MiB, more than the "
                                    f"{MAX_MESSAGE_BYTES // 2**20} MiB an answer may be", stage)
            data = b"" if first is None else first.body.to_pybytes()
        except fl.FlightTimedOutError:
            raise self._hung(stage, f"the plugin did not answer '{kind}'", limit, "call_timeout_s") from None
        except (pa.ArrowException, OSError) as exc:  # every FlightError is an ArrowException
            raise self.failure(exc, stage) from None
        try:
            return loads_object(data, f"the result of '{kind}'")
        except ValueError as exc:
            raise self._invalid(
                f"the plugin answered '{kind}' with something else than the protocol says: {exc}", stage
            ) from None

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


_LOCAL_SOCKET_OPTIONS = [("grpc.http2.bdp_probe", 0)]
"""On a local socket there is no bandwidth-delay product to probe: left on, gRPC widens its receive window
and buffers more of the plugin's batches than the read-ahead allows (about 25 MB more host RSS, measured with
a Go reader of 8 MiB batches), for no speed."""


def _options(location: str) -> list[tuple[str, Any]]:
    return _LOCAL_SOCKET_OPTIONS if location.startswith("grpc+unix:") else []


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
        ticket = fl.Ticket(split_command(split))
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
                    ended = RuntimeError("the stream ended without an end")
                    raise self.conn.failure(ended, "read", self.where) from None
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
        descriptor = fl.FlightDescriptor.for_command(split_command(self.split))
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
                    writer.write_metadata(ABORT_NOTE)
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
        if self.result.size > MAX_MESSAGE_BYTES:  # refused before it is copied or parsed
            raise self.conn.invalid("write", f"is {self.result.size / 2**20:,.0f} MiB, more than the "
                                    f"{MAX_MESSAGE_BYTES // 2**20} MiB an answer may be")
        try:
            value = loads_object(self.result.to_pybytes(), "it")
            return written_from_json(value, dataset=self.split.dataset, split=self.split.id)
        except ValueError as exc:
            raise self.conn.invalid("write", f"is not a protocol 'written': {exc}") from None
