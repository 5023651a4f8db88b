"""The out-of-process plugin protocol, as data: versions, actions, message shapes and their JSON.

This is ``docs/plugins/protocol.md`` in code, shared by both ends: the host (:mod:`.client`, :mod:`.remote`,
:mod:`.process`) and the Python server (:mod:`.serve`); the native loader (:mod:`.native`) uses the same
JSON shapes for its descriptors. Nothing here does I/O, and nothing here imports pyarrow.flight.

Every parser raises :class:`ValueError` naming the shape it expected; the caller turns that into the error
of its own side (a ``PluginFailed`` on the host, a ``DATIVO-ERROR`` on the server).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from dativo.api import CommitInfo, Context, Dataset, Split, WrittenFiles
from dativo.errors import ERROR_KINDS, PluginIncompatible

PROTOCOL_VERSION = 1
"""The version of ``docs/plugins/protocol.md`` this Dativo speaks (``dativo_flight`` in the handshake)."""
SOCKET_ENV = "DATIVO_FLIGHT_SOCKET"
"""The Unix socket a started plugin must listen on (in a folder the host made) and name in its handshake."""
PROTOCOL_ENV = "DATIVO_PROTOCOL"
"""Holds the protocol version of the host that started the plugin."""
SOCKET_NAME = "plugin.sock"
"""The file name of the socket in the folder the host makes."""
ERROR_PREFIX = "DATIVO-ERROR "
"""Starts the line of a failing call's Flight error that carries ``{"kind", "message", "hint"}``."""

ACTIONS = {
    "health": "Is the plugin up? {} -> {ok, dativo_flight}",
    "spec": "What the plugin is. {role?} -> {name, version, language, roles, api_version, config_schema}",
    "configure": "Create the reader or writer. {role, options, settings, context} -> {}",
    "check": "Is the source/target reachable? {role?} -> {}",
    "discover": "Datasets of the reader. {} -> {datasets}",
    "plan": "Splits of a dataset. {dataset, state} -> {splits}",
    "prepare": "Create or evolve the target. {dataset, schema, mode} -> {}",
    "state": "State of the last commit. {dataset} -> {state}",
    "commit": "Publish files and state at once. {dataset, files, state, run_id} -> {commit_id, rows, no_op}",
    "abort": "Discard written files. {files} -> {}",
    "close": "Release the reader or writer. {role?} -> {counters?: {role: {name: count}}}",
    "shutdown": "Exit after answering. {} -> {}",
}
"""Every ``DoAction`` of the protocol, with its body and result."""

_LOAD_ACTIONS = ("health", "spec", "configure")


def stage_of(action: str) -> str:
    """The contract stage an action serves, for messages (``spec`` and ``configure`` are ``load``)."""
    return "load" if action in _LOAD_ACTIONS else action


# --- JSON ---------------------------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """One protocol JSON document, UTF-8, written ``"key": value`` (simple C plugins search for that)."""
    return json.dumps(value, default=str, ensure_ascii=False).encode("utf-8")


MAX_MESSAGE_BYTES = 64 * 2**20
"""The most an action's body or answer may hold: parsed, JSON takes several times its size in memory, and a
plugin's answer is not trusted to be small (10,000 splits of 6 KiB each fit)."""


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse a JSON object (an empty body is ``{}``).

    Raises:
        ValueError: Naming ``what`` when it is not a JSON object, or is larger than :data:`MAX_MESSAGE_BYTES`.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"{what} is {len(data) / 2**20:,.0f} MiB, more than the {MAX_MESSAGE_BYTES // 2**20} MiB "
                         "an action's message may be")
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} is not JSON ({exc}): {text[:200]!r}") from None
    except RecursionError:  # a plugin's answer nested deeper than the parser goes
        raise ValueError(f"{what} is JSON nested too deeply to read") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is a JSON {type(value).__name__}, not an object: {text[:200]!r}")
    return value


def strings(value: Any) -> bool:
    """Whether ``value`` is a JSON list of strings."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _not(value: Any, shape: str) -> ValueError:
    return ValueError(f"{json.dumps(value, default=str)[:200]} is not {shape}")


def schema_to_b64(schema: pa.Schema) -> str:
    """An Arrow schema as base64 of its IPC schema message."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_b64(text: str) -> pa.Schema:
    """The inverse of :func:`schema_to_b64` (also reads Go's ``flight.SerializeSchema``)."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def dataset_to_json(dataset: Dataset, *, schema: bool = True) -> dict[str, Any]:
    """``{"name", "schema", "primary_key", "cursor_candidates", …}`` (without ``schema`` if it is ``False``).

    ``cursor``, ``estimated_rows`` and ``details`` are sent only when set (protocol additions a peer may
    not know).
    """
    value: dict[str, Any] = {"name": dataset.name}
    if schema:
        value["schema"] = None if dataset.schema is None else schema_to_b64(dataset.schema)
    value["primary_key"] = list(dataset.primary_key)
    value["cursor_candidates"] = list(dataset.cursor_candidates)
    if dataset.cursor is not None:
        value["cursor"] = dataset.cursor
    if dataset.estimated_rows is not None:
        value["estimated_rows"] = dataset.estimated_rows
    if dataset.details:
        value["details"] = dict(dataset.details)
    return value


def dataset_from_json(value: Any) -> Dataset:
    """Raises ``ValueError`` if ``value`` is not a protocol dataset (``schema`` may be absent)."""
    if not (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and value["name"]
        and strings(value.get("primary_key") or [])
        and strings(value.get("cursor_candidates") or [])
        and isinstance(value.get("schema"), str | None)
        and isinstance(value.get("cursor"), str | None)
        and (value.get("estimated_rows") is None
             or (isinstance(value["estimated_rows"], int) and not isinstance(value["estimated_rows"], bool)))
        and isinstance(value.get("details") or {}, dict)
    ):
        raise _not(
            value, '{"name": str, "schema": base64 | null, "primary_key": [str], "cursor_candidates": [str], '
            '"cursor": str | null, "estimated_rows": int | null, "details": {…}}'
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
        cursor=value.get("cursor") or None,
        estimated_rows=value.get("estimated_rows"),
        details=value.get("details") or {},
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
        raise _not(value, '{"dataset": str, "id": str, "params": {...}}')
    return Split(value["dataset"], str(value.get("id", "0")), value.get("params") or {})


def splits_from_json(dataset: Dataset, entries: Any) -> list[Split]:
    """The splits a plan listed for ``dataset`` (an entry may omit ``dataset``), with unique ids.

    Raises:
        ValueError: ``entries`` is not a list of splits, or two have the same id.
    """
    if not isinstance(entries, list):
        raise _not(entries, "a list of splits")
    splits = [split_from_json({"dataset": dataset.name, **e} if isinstance(e, dict) else e) for e in entries]
    if len({s.id for s in splits}) != len(splits):
        raise ValueError("lists splits with duplicate ids")
    return splits


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
        and strings(value.get("files") or [])
        and isinstance(value.get("rows", 0), int)
        and isinstance(value.get("bytes", 0), int)
        and isinstance(value.get("extra") or {}, dict)
    ):
        raise _not(
            value, '{"dataset": str, "split": str, "files": [str], "rows": int, "bytes": int, "extra": {...}}'
        )
    return WrittenFiles(
        dataset=str(value.get("dataset") or dataset),
        split=str(value.get("split") or split),
        files=list(value.get("files") or []),
        rows=int(value.get("rows", 0)),
        bytes=int(value.get("bytes", 0)),
        extra=dict(value.get("extra") or {}),
    )


def commit_to_json(info: CommitInfo) -> dict[str, Any]:
    """``{"commit_id", "rows", "no_op"}``."""
    return {"commit_id": info.commit_id, "rows": info.rows, "no_op": info.no_op}


def commit_from_json(value: Any) -> CommitInfo:
    """Raises ``ValueError`` if ``value`` is not ``{"commit_id", "rows", "no_op"}``."""
    if not (
        isinstance(value, dict)
        and isinstance(value.get("rows") or 0, int)
        and isinstance(value.get("no_op", False), bool)
    ):
        raise _not(value, '{"commit_id", "rows", "no_op"}')
    commit_id = value.get("commit_id")
    return CommitInfo(
        None if commit_id is None else str(commit_id), value.get("rows") or 0, value.get("no_op", False)
    )


# --- configure and spec -------------------------------------------------------------------------------------


def configure_body(options: Mapping[str, Any], ctx: Context, *, role: str | None = None) -> dict[str, Any]:
    """``{"role", "options", "settings", "context"}``: what a plugin is created from (``role`` if given)."""
    body: dict[str, Any] = {} if role is None else {"role": role}
    body["options"] = dict(options)
    body["settings"] = dict(ctx.settings)
    body["context"] = {
        "job": ctx.job,
        "run_id": ctx.run_id,
        "plugin": ctx.plugin,
        "parallelism": ctx.parallelism,
        "cursor": ctx.cursor,
        "work_dir": ctx.work_dir,
        "memory_bytes": ctx.memory_bytes,
        "batch_bytes": ctx.batch_bytes,
    }
    return body


def context_from_json(
    value: Any, *, settings: Mapping[str, Any], plugin: str, logger: logging.Logger
) -> Context:
    """The :class:`~dativo.api.Context` of a ``configure`` body's ``context`` (``plugin``: its default)."""
    context = value if isinstance(value, dict) else {}
    return Context(
        job=str(context.get("job") or "job"),
        run_id=str(context.get("run_id") or ""),
        plugin=str(context.get("plugin") or plugin),
        logger=logger,
        settings=settings,
        parallelism=int(context.get("parallelism") or 1),
        cursor=context.get("cursor"),
        work_dir=str(context.get("work_dir") or ".dativo"),
        memory_bytes=_positive(context.get("memory_bytes"), Context.memory_bytes),
        batch_bytes=_positive(context.get("batch_bytes"), Context.batch_bytes),
    )


def _positive(value: Any, default: int) -> int:
    """A size the host sent, or ``default`` from an older host (or a value that is not a positive int)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


_SPEC_FIELDS: dict[str, Any] = {
    "name": lambda v: isinstance(v.get("name", ""), str),
    "version": lambda v: isinstance(v.get("version", ""), str),
    "language": lambda v: isinstance(v.get("language", ""), str),
    "roles": lambda v: strings(v.get("roles")),
    "api_version": lambda v: isinstance(v.get("api_version", ""), str),
    "config_schema": lambda v: isinstance(v.get("config_schema"), dict | None),
    "allow_fallback": lambda v: isinstance(v.get("allow_fallback", True), bool),
}


def spec_problems(spec: dict[str, Any]) -> list[str]:
    """The fields of a ``spec`` result that are missing or of the wrong type (empty: it is valid)."""
    return [key for key, valid in _SPEC_FIELDS.items() if not valid(spec)]


# --- the handshake ------------------------------------------------------------------------------------------


def handshake_line(location: str, *, name: str, version: str) -> str:
    """The one line a plugin prints on stdout once it listens."""
    return json.dumps(
        {"dativo_flight": PROTOCOL_VERSION, "location": location, "name": name, "version": version}
    )


def parse_handshake(text: str) -> dict[str, Any] | None:
    """The handshake object in a plugin's first line, or ``None`` if the line is not one."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) and "dativo_flight" in value else None


def unix_location(path: str) -> str:
    """``grpc+unix://PATH``: how a started plugin's handshake names the socket ``$DATIVO_FLIGHT_SOCKET``."""
    return f"grpc+unix://{path}"


def protocol_mismatch(spoken: Any, who: str = "the plugin") -> PluginIncompatible | None:
    """The error for a plugin that speaks protocol ``spoken``; ``None`` if that is this Dativo's."""
    if spoken == PROTOCOL_VERSION:
        return None
    return PluginIncompatible(
        f"{who} speaks plugin protocol {spoken}, but this Dativo speaks protocol {PROTOCOL_VERSION}",
        hint=f"Use a build of the plugin for protocol {PROTOCOL_VERSION}, or a Dativo that speaks protocol "
        f"{spoken}.",
    )


# --- data streams -------------------------------------------------------------------------------------------


def split_command(split: Split) -> bytes:
    """The ticket of a ``DoGet`` and the command of a ``DoPut``: ``{"split": split}``."""
    return dumps({"split": split_to_json(split)})


def split_of_command(data: bytes, what: str) -> Split:
    """The inverse of :func:`split_command`; raises ``ValueError`` naming ``what`` (the ticket …)."""
    return split_from_json(loads_object(data, what).get("split"))


ABORT_NOTE = dumps({"abort": True})
"""The metadata message a host sends before it ends a ``DoPut`` whose source failed."""


def is_abort(metadata: bytes) -> bool:
    """Whether a ``DoPut`` metadata message is :data:`ABORT_NOTE`."""
    try:
        return bool(loads_object(metadata, "the metadata").get("abort"))
    except ValueError:
        return False


# --- errors -------------------------------------------------------------------------------------------------


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
