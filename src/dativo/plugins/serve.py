"""Serving Python readers and writers over the out-of-process protocol: ``dativo plugin serve``.

``dativo plugin serve pkg.mod:Class [pkg.mod:Other]`` loads a Reader and/or a Writer (a dotted path, an entry
point or a built-in name, validated like any plugin) and serves it as ``docs/plugins/protocol.md`` says, with
a :class:`pyarrow.flight.FlightServerBase`: it listens on the socket ``$DATIVO_FLIGHT_SOCKET`` names (on
``--listen`` when no host started it), prints its handshake line, and runs until ``shutdown``, or until its
stdin reaches EOF when a host started it.
Whatever the plugin raises becomes a ``DATIVO-ERROR`` line of the right kind, so the host raises the same
error as if the plugin ran in its own process. This is how untrusted Python code runs in the sandbox.

Stdout is reserved for the handshake: everything the plugin prints, even while it is imported, goes to
stderr, which the host logs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from itertools import chain
from typing import Any, TextIO
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.flight as fl

from dativo.api import CommitInfo, Context, Dataset, Role, Split, WrittenFiles
from dativo.errors import (
    DativoError,
    PluginFailed,
    PluginIncompatible,
    PluginNotFound,
    SchemaMismatch,
    error_kind,
    side,
)
from dativo.market import capabilities
from dativo.plugins.protocol import (
    ACTIONS,
    PROTOCOL_ENV,
    PROTOCOL_VERSION,
    SOCKET_ENV,
    commit_to_json,
    context_from_json,
    dataset_from_json,
    dataset_to_json,
    dumps,
    error_line,
    handshake_line,
    is_abort,
    loads_object,
    schema_from_b64,
    split_of_command,
    split_to_json,
    stage_of,
    unix_location,
    written_from_json,
    written_to_json,
)
from dativo.registry import PluginSpec, resolve
from dativo.secrets import redact
from dativo.streams import arrow_batches, describe, schema_difference  # the engine's own normalisation

HARD_EXIT_S = 5.0
"""After a shutdown request, how long calls in flight may take before the process exits anyway."""
log = logging.getLogger("dativo.plugins.serve")

def flight_error(exc: BaseException, stage: str) -> fl.FlightServerError:
    """The Flight error carrying ``exc`` as a ``DATIVO-ERROR`` line."""
    if isinstance(exc, fl.FlightServerError) and "DATIVO-ERROR" in str(exc):
        return exc
    if isinstance(exc, DativoError):
        message, hint = exc.message, exc.hint
    else:
        log.debug("%s() raised", stage, exc_info=exc)  # the traceback, for `dativo run --debug`
        message, hint = f"{stage}() raised {type(exc).__name__}: {exc}", None
        limit = os.environ.get("DATIVO_SANDBOX_MEMORY_MB")
        if isinstance(exc, MemoryError) and limit:  # served in a sandbox: name the limit it ran into
            message += f" (the sandbox allows {limit} MiB of address space: sandbox.memory_mb)"
            hint = "Raise sandbox.memory_mb if the plugin really needs more memory."
        denied = capabilities.explain(exc)  # sandboxed with only its manifest's capabilities: name the one it lacked
        if denied is not None:
            message, hint = f"{message} ({denied[0]})", denied[1]
    return fl.FlightServerError(error_line(error_kind(exc, stage), message, hint))


class PluginServer(fl.FlightServerBase):
    """A Flight server for one Python reader and/or writer.

    Args:
        location: Where to listen (``grpc+unix:///path`` or ``grpc://127.0.0.1:0``).
        specs: The validated plugin of each role served.
        name: The plugin's name in the handshake and ``spec``.
    """

    def __init__(self, location: str, specs: dict[Role, PluginSpec], *, name: str) -> None:
        super().__init__(location)
        self.specs = specs
        self.name = name
        self.stopping = threading.Event()
        self._instances: dict[Role, Any] = {}
        self._contexts: dict[Role, Context] = {}  # their counters go back in the result of close
        self._lock = threading.Lock()

    # --- helpers --------------------------------------------------------------------------------------------

    def _instance(self, role: Role) -> Any:
        with self._lock:
            instance = self._instances.get(role)
        if instance is None:
            raise PluginFailed(f"the {role} is not configured: the host must call 'configure' first")
        return instance

    def _roles(self, body: dict[str, Any]) -> list[Role]:
        role = body.get("role")
        if role is None:
            with self._lock:
                return list(self._instances)
        if role not in ("reader", "writer"):
            raise PluginFailed(f"role must be 'reader' or 'writer', not {role!r}")
        return [role]

    def close_all(self) -> None:
        """Close every configured instance (at shutdown)."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            try:
                instance.close()
            except Exception as exc:  # exiting anyway
                log.warning("close() failed: %s", exc)

    # --- actions --------------------------------------------------------------------------------------------

    def list_actions(self, context: fl.ServerCallContext) -> list[tuple[str, str]]:
        """The protocol's actions."""
        return list(ACTIONS.items())

    def do_action(self, context: fl.ServerCallContext, action: fl.Action) -> Iterator[bytes]:
        """Answer one action with one JSON object."""
        kind = action.type
        stage = stage_of(kind)
        try:
            handler = getattr(self, f"_action_{kind}", None)
            if kind not in ACTIONS or handler is None:
                raise PluginFailed(f"unknown action '{kind}'")
            body = loads_object(
                action.body.to_pybytes() if action.body is not None else b"", f"the body of '{kind}'"
            )
            result = handler(body)
        except Exception as exc:
            raise flight_error(exc, stage) from None
        return iter([dumps(result)])

    def _action_health(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "dativo_flight": PROTOCOL_VERSION}

    def _action_spec(self, body: dict[str, Any]) -> dict[str, Any]:
        role = body.get("role") if body.get("role") in self.specs else next(iter(self.specs))
        spec = self.specs[role]
        return {
            "name": self.name,
            "version": spec.version,
            "language": spec.language,
            "roles": list(self.specs),
            "api_version": spec.api_version,
            "config_schema": spec.cls.Config.model_json_schema(),
            "allow_fallback": bool(getattr(spec.cls, "allow_fallback", True)),
        }

    def _action_configure(self, body: dict[str, Any]) -> dict[str, Any]:
        role = body.get("role")
        if role not in ("reader", "writer"):
            raise PluginFailed(f"configure needs a role 'reader' or 'writer', not {role!r}")
        spec = self.specs.get(role)
        if spec is None:
            raise PluginFailed(f"this plugin serves no {role} (it serves: {', '.join(self.specs)})")
        options, settings = body.get("options") or {}, body.get("settings") or {}
        context = body.get("context") or {}
        if not (isinstance(options, dict) and isinstance(settings, dict) and isinstance(context, dict)):
            raise PluginFailed("configure: options, settings and context must be JSON objects")
        config = spec.build_config(settings, options, section=side(role).partition(".")[0])
        logger = logging.getLogger(f"dativo.{role}.{self.name}")  # the host's log names the job's plugin
        ctx = context_from_json(context, settings=settings, plugin=self.name, logger=logger)
        try:
            instance = spec.cls(config, ctx)
        except DativoError:
            raise
        except Exception as exc:
            raise PluginFailed(f"__init__() raised {type(exc).__name__}: {exc}") from exc
        with self._lock:
            previous, self._instances[role] = self._instances.get(role), instance
            self._contexts[role] = ctx
        if previous is not None:  # a running plugin serves one host at a time; the new configuration wins
            with suppress(Exception):
                previous.close()
        return {}

    def _action_check(self, body: dict[str, Any]) -> dict[str, Any]:
        for role in self._roles(body):
            self._instance(role).check()
        return {}

    def _action_discover(self, body: dict[str, Any]) -> dict[str, Any]:
        datasets = self._instance("reader").discover()
        if not isinstance(datasets, list | tuple) or not all(isinstance(d, Dataset) for d in datasets):
            raise PluginFailed(
                f"discover() returned {describe(datasets)}; it must return a list of dativo.api.Dataset"
            )
        return {"datasets": [dataset_to_json(d) for d in datasets]}

    def _action_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        dataset = dataset_from_json(body.get("dataset"))
        splits = self._instance("reader").plan(dataset, body.get("state"))
        if not isinstance(splits, list | tuple) or not all(isinstance(s, Split) for s in splits):
            raise PluginFailed(
                f"plan() returned {describe(splits)}; it must return a list of dativo.api.Split"
            )
        return {"splits": [split_to_json(s) for s in splits]}

    def _action_prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        dataset = dataset_from_json(body.get("dataset"))
        schema = schema_from_b64(str(body.get("schema") or ""))
        self._instance("writer").prepare(dataset, schema, body.get("mode") or "append")
        return {}

    def _action_state(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"state": self._instance("writer").state(dataset_from_json(body.get("dataset")))}

    def _action_commit(self, body: dict[str, Any]) -> dict[str, Any]:
        dataset = dataset_from_json(body.get("dataset"))
        files = [written_from_json(f) for f in body.get("files") or []]
        info = self._instance("writer").commit(
            dataset, files, body.get("state"), str(body.get("run_id") or "")
        )
        return commit_to_json(info if isinstance(info, CommitInfo) else CommitInfo(commit_id=None))

    def _action_abort(self, body: dict[str, Any]) -> dict[str, Any]:
        self._instance("writer").abort([written_from_json(f) for f in body.get("files") or []])
        return {}

    def _action_close(self, body: dict[str, Any]) -> dict[str, Any]:
        counters: dict[str, dict[str, int]] = {}
        for role in self._roles(body):
            with self._lock:
                instance = self._instances.pop(role, None)
                ctx = self._contexts.pop(role, None)
            if instance is not None:
                instance.close()
            if ctx is not None:
                counters[role] = ctx.counters.snapshot()
        return {"counters": counters}

    def _action_shutdown(self, body: dict[str, Any]) -> dict[str, Any]:
        self.stopping.set()  # the main thread shuts the server down once this answer is sent
        return {}

    # --- data -----------------------------------------------------------------------------------------------

    def do_get(self, context: fl.ServerCallContext, ticket: fl.Ticket) -> fl.FlightDataStream:
        """Stream one split's batches."""
        try:
            split = split_of_command(ticket.ticket, "the ticket")
            reader = self._instance("reader")
            schema, batches = arrow_batches(reader.read(split))
            if schema is None:  # a generator: the first batch decides, as in process
                first = next(batches, None)
                if first is None:
                    declared = getattr(reader, "schema", None)
                    schema, batches = (
                        (declared if isinstance(declared, pa.Schema) else pa.schema([])),
                        iter(()),
                    )
                else:
                    schema, batches = first.schema, chain([first], batches)
        except Exception as exc:
            raise flight_error(exc, "read") from None
        return fl.GeneratorStream(schema, self._checked(split, schema, batches))

    @staticmethod
    def _checked(
        split: Split, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                if not batch.schema.equals(schema):
                    difference = schema_difference(schema, batch.schema)
                    if difference:
                        raise SchemaMismatch(
                            f"dataset '{split.dataset}' split '{split.id}': {difference}",
                            hint="Make every batch match the schema of the first one (or the declared one).",
                        )
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                yield batch
        except Exception as exc:  # not GeneratorExit: a cancelled stream just stops
            raise flight_error(exc, "read") from None

    def do_put(
        self,
        context: fl.ServerCallContext,
        descriptor: fl.FlightDescriptor,
        reader: fl.MetadataRecordBatchReader,
        writer: fl.FlightMetadataWriter,
    ) -> None:
        """Write one split's batches and answer with what was written."""
        abandoned = threading.Event()

        def batches() -> Iterator[pa.RecordBatch]:
            while True:
                try:
                    chunk = reader.read_chunk()
                except StopIteration:
                    return
                if chunk.app_metadata is not None and is_abort(chunk.app_metadata.to_pybytes()):
                    abandoned.set()
                    raise PluginFailed(f"the host abandoned split '{split.id}' (its source failed)")
                if chunk.data is not None:
                    yield chunk.data

        try:
            split = split_of_command(descriptor.command or b"", "the descriptor")
            stream = pa.RecordBatchReader.from_batches(reader.schema, batches())
            written = self._instance("writer").write(split, stream)
            if abandoned.is_set():  # the plugin swallowed the abort: its files are not a complete split
                raise PluginFailed(f"the host abandoned split '{split.id}'")
            if not isinstance(written, WrittenFiles):
                raise PluginFailed(
                    f"write() returned {describe(written)}; it must return dativo.api.WrittenFiles"
                )
            writer.write(pa.py_buffer(dumps(written_to_json(written))))
        except Exception as exc:
            raise flight_error(exc, "write") from None


# --- the command --------------------------------------------------------------------------------------------


def _load(targets: Sequence[str], only: Role | None) -> dict[Role, PluginSpec]:
    """The plugin of each role among ``targets``.

    A target may be both (the built-in ``parquet``): it takes the roles no single-role target claims, so
    ``serve my:Reader parquet`` serves the parquet writer.
    """
    offers: list[dict[Role, PluginSpec]] = []
    for target in targets:
        errors: list[DativoError] = []
        offer: dict[Role, PluginSpec] = {}
        for role in (only,) if only else ("reader", "writer"):
            try:
                offer[role] = resolve(role, target)
            except (PluginNotFound, PluginIncompatible, PluginFailed) as exc:
                errors.append(exc)
        if not offer:
            # "X is not a Writer" says nothing when X is a broken Reader: prefer the other error
            relevant = [
                e for e in errors if "not a dativo.api." not in e.message and " named '" not in e.message
            ]
            raise (relevant or errors)[0]
        offers.append(offer)
    specs: dict[Role, PluginSpec] = {}
    for offer in sorted(offers, key=len):
        free = {role: spec for role, spec in offer.items() if role not in specs}
        if not free:
            role, spec = next(iter(offer.items()))
            raise PluginIncompatible(
                f"both '{specs[role].name}' and '{spec.name}' are {role}s",
                hint="Serve one reader and one writer at most.",
            )
        specs.update(free)
    return specs


def _private_stdout() -> TextIO:
    """Keep the real stdout for the handshake; point fd 1 (Python's and C's stdout) at stderr."""
    sys.stdout.flush()
    handshake = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return handshake


def _listen_location(listen: str | None) -> str:
    """The socket a host that started us names (``--listen`` cannot move it), else ``--listen`` or a port."""
    socket = os.environ.get(SOCKET_ENV)
    if not socket:
        return listen or "grpc://127.0.0.1:0"
    if listen and listen != unix_location(socket):
        log.warning("ignoring --listen %s: the host that started this plugin connects only to $%s", listen,
                    SOCKET_ENV)
    return unix_location(socket)


def _bound_location(location: str, port: int) -> str:
    """The location the host connects to: the real port when ``:0`` asked for any."""
    parts = urlsplit(location)
    if parts.scheme.endswith("unix") or parts.port not in (0, None):
        return location
    return f"{parts.scheme}://{parts.hostname or '127.0.0.1'}:{port}"


def _watch_stdin(stop: threading.Event) -> None:
    try:  # the raw fd, not sys.stdin: a thread blocked in a buffered read aborts the interpreter at exit
        while os.read(0, 65536):  # the host never writes: this returns at EOF
            pass
    except OSError:
        pass
    if not stop.is_set():
        log.info("stdin closed (the host is gone): shutting down")
    stop.set()


def serve(
    targets: Sequence[str],
    *,
    listen: str | None = None,
    role: Role | None = None,
    name: str | None = None,
    exit_on_stdin_eof: bool | None = None,
    debug: bool = False,
) -> int:
    """Serve ``targets`` until ``shutdown`` (or stdin EOF) and return the exit code.

    Args:
        targets: A reader and/or a writer: ``package.module:Class``, entry point or built-in name.
        listen: Where to listen when no host started us (``grpc://127.0.0.1:0`` if not given); a host's
            ``$DATIVO_FLIGHT_SOCKET`` always wins, since the host connects nowhere else.
        role: Serve only this role of the targets.
        name: The plugin's name (default: the first target).
        exit_on_stdin_eof: Exit when stdin reaches EOF; default: when a host started us (``DATIVO_PROTOCOL``).
        debug: Log at DEBUG level.
    """
    handshake_out = _private_stdout()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))  # the host reads the level
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)  # as `dativo run` in process
    logging.getLogger("dativo").setLevel(logging.DEBUG if debug else logging.INFO)
    hosted = PROTOCOL_ENV in os.environ
    listen = _listen_location(listen)
    try:
        specs = _load(targets, role)
        server = PluginServer(listen, specs, name=name or targets[0])
    except DativoError as exc:
        print(f"Error: {redact(str(exc))}", file=sys.stderr, flush=True)
        return exc.exit_code
    except Exception as exc:  # e.g. the socket cannot be bound
        print(
            f"Error: cannot serve {', '.join(targets)}: {type(exc).__name__}: {redact(str(exc))}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    first = next(iter(specs.values()))
    location = _bound_location(listen, server.port)
    handshake_out.write(handshake_line(location, name=server.name, version=first.version) + "\n")
    handshake_out.close()  # the host's stdout pipe sees EOF: every later print goes to stderr
    log.log(
        logging.DEBUG if hosted else logging.INFO,
        "serving %s on %s",
        " and ".join(f"{r} {s.name}" for r, s in specs.items()),
        location,
    )
    if exit_on_stdin_eof if exit_on_stdin_eof is not None else hosted:
        threading.Thread(
            target=_watch_stdin, args=(server.stopping,), name="dativo-stdin", daemon=True
        ).start()
    try:
        while not server.stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    hard_exit = threading.Timer(HARD_EXIT_S, os._exit, args=(0,))  # a call that hangs must not keep us alive
    hard_exit.daemon = True
    hard_exit.start()
    server.shutdown()
    server.close_all()
    hard_exit.cancel()
    return 0
