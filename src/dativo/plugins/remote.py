"""Out-of-process plugins as ordinary Readers and Writers: proxies whose methods are protocol calls.

:func:`plugin_class` makes the Reader (or Writer) class of one plugin process, from the :class:`Launcher` that
reaches it; nothing starts then. That class knows only how to reach the plugin; what the plugin *is* (its
version, language, API range, ``allow_fallback`` and the JSON Schema of its options) it says over Flight in
its ``spec``, and :func:`described` makes a subclass that carries it — created once, by whoever learnt it
(:class:`dativo.plugins.host.PluginHost`), and never changed afterwards. A class is never written to.

An instance speaks to the plugin over one :class:`~dativo.plugins.client.Connection`: the one the host opened
to learn the spec when it is handed in, else its own. ``close()`` ends that connection (and the process).
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import CommitInfo, Context, Dataset, Mode, Reader, Role, Split, State, Writer, WrittenFiles
from dativo.errors import DativoError, PluginIncompatible, commit_error, side
from dativo.plugins.client import Connection, Launcher
from dativo.plugins.options import PluginOptions, declared
from dativo.plugins.protocol import (
    commit_from_json,
    configure_body,
    dataset_from_json,
    dataset_to_json,
    schema_to_b64,
    spec_problems,
    splits_from_json,
    written_to_json,
)

log = logging.getLogger("dativo.plugins.remote")


class RemoteOptions(PluginOptions):
    """Options of an out-of-process plugin: anything, until its ``spec`` declares them (:func:`described`).

    ``dativo plugins info`` shows the JSON Schema the plugin published in its ``spec``.
    """


def learn_spec(conn: Connection, role: Role) -> dict[str, Any]:
    """Ask the plugin behind ``conn`` for its ``spec``, and check that it is valid and offers ``role``.

    Raises:
        PluginFailed: The answer does not follow the protocol.
        PluginIncompatible: The plugin does not implement ``role``.
    """
    spec = conn.action("spec", {"role": role})
    bad = spec_problems(spec)
    if bad:
        raise conn.invalid("spec", f"has invalid or missing {', '.join(bad)}: {json.dumps(spec)[:300]}")
    roles = spec["roles"]
    if role not in roles:
        offers = " and ".join(roles) or "plugin of no role"
        raise PluginIncompatible(
            f"the plugin is a {offers} (its spec says roles: {roles}), so it cannot be the {role}",
            plugin=conn.name,
            hint=f"Name a plugin that implements a {role} in {side(role)}.implementation.",
        )
    return spec


class RemotePlugin:
    """What the Reader and Writer proxies share: how to reach the plugin, its spec, and one connection.

    Attributes:
        launcher: How to reach the plugin.
        role: ``reader`` or ``writer``.
        plugin_spec: The ``spec`` the plugin answered, on a :func:`described` class; ``None`` on the class
            :func:`plugin_class` makes (its instances then ask for it themselves).
    """

    launcher: ClassVar[Launcher]
    role: ClassVar[Role]
    Config: ClassVar[type[BaseModel]] = RemoteOptions
    language: ClassVar[str] = "unknown"
    plugin_spec: ClassVar[dict[str, Any] | None] = None

    def __init__(self, config: BaseModel, ctx: Context, *, connection: Connection | None = None) -> None:
        super().__init__(config, ctx)  # type: ignore[call-arg]
        self._conn = self._open(config, ctx, connection)

    def _open(self, config: BaseModel, ctx: Context, conn: Connection | None) -> Connection:
        conn = conn or Connection(self.launcher, self.role, ctx.logger, job=ctx.job)
        conn.adopt(job=ctx.job, logger=ctx.logger)
        try:
            if self.plugin_spec is None:  # nobody described this class: is the plugin one of this role?
                learn_spec(conn, self.role)
            options = config.model_dump(by_alias=True, exclude_unset=True)  # as the job wrote them
            conn.action("configure", configure_body(options, ctx, role=self.role))
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
                result = conn.action("close", {"role": self.role})
            except DativoError as exc:  # the run's own outcome matters more
                log.debug("close() of %s failed: %s", self.launcher.name, exc)
            else:  # what the plugin counted ({"counters": {role: {name: n}}}; an older plugin sends none)
                counters = result.get("counters")
                self.ctx.counters.merge(counters.get(self.role) if isinstance(counters, dict) else counters,
                                        f"plugin {self.launcher.name}")
        conn.close(shutdown=True)


class FlightReader(RemotePlugin, Reader):
    """A reader served by a plugin process; :func:`plugin_class` makes one subclass per plugin."""

    role: ClassVar[Role] = "reader"

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
            return splits_from_json(dataset, entries)
        except ValueError as exc:
            raise self._conn.invalid("plan", f"lists a split {exc}") from None

    def read(self, split: Split) -> pa.RecordBatchReader:
        """``DoGet`` the split; the batches stream as the engine pulls them."""
        return self._conn.read(split)


class FlightWriter(RemotePlugin, Writer):
    """A writer served by a plugin process; :func:`plugin_class` makes one subclass per plugin."""

    role: ClassVar[Role] = "writer"

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
        body = {"dataset": dataset_to_json(dataset), "schema": schema_to_b64(schema), "mode": mode}
        self._conn.action("prepare", body)

    def write(self, split: Split, stream: pa.RecordBatchReader) -> WrittenFiles:
        """``DoPut`` the split's batches; the plugin answers with what it wrote."""
        return self._conn.write(split, stream)

    def commit(
        self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str
    ) -> CommitInfo:
        """The plugin's ``commit``."""
        body = {
            "dataset": dataset_to_json(dataset),
            "files": [written_to_json(w) for w in files],
            "state": state,
            "run_id": run_id,
        }
        result = self._conn.action("commit", body)
        try:
            return commit_from_json(result)
        except ValueError as exc:  # it did answer OK: only its description is broken
            raise commit_error(
                f"the plugin's answer to 'commit' does not follow the protocol: {exc}",
                hint=f"Fix the plugin; rerun with --run-id {run_id} to settle it.",
            ).with_context(job=self.ctx.job, plugin=self.ctx.plugin) from None

    def abort(self, files: list[WrittenFiles]) -> None:
        """The plugin's ``abort``."""
        self._conn.action("abort", {"files": [written_to_json(w) for w in files]})


def plugin_class(
    role: Role, launcher: Launcher, *, doc: str | None = None
) -> type[FlightReader] | type[FlightWriter]:
    """Make the Reader (or Writer) class of one out-of-process plugin; nothing starts.

    Args:
        role: ``reader`` or ``writer``.
        launcher: How to start or reach the plugin.
        doc: The class's docstring.
    """
    if role not in ("reader", "writer"):
        raise ValueError(f"role must be 'reader' or 'writer', not {role!r}")
    base: type = FlightReader if role == "reader" else FlightWriter
    return type(
        f"{base.__name__}[{launcher.name}]",
        (base,),
        {
            "launcher": launcher,
            "__module__": __name__,
            "__doc__": doc or f"The out-of-process {role} {launcher.name}.",
        },
    )


def is_remote(cls: Any) -> bool:
    """Whether ``cls`` is an out-of-process plugin's class (:func:`plugin_class`, :func:`described`)."""
    return isinstance(cls, type) and issubclass(cls, RemotePlugin)


def described(cls: type[RemotePlugin], spec: dict[str, Any]) -> type[RemotePlugin]:
    """A subclass of ``cls`` that is the plugin its ``spec`` (from :func:`learn_spec`) describes.

    Its ``version``, ``language``, ``api_version`` and ``allow_fallback`` are the plugin's own, and its
    ``Config`` publishes the plugin's ``config_schema`` and checks the job's options against it
    (:func:`dativo.plugins.options.declared`), except for a Python plugin, whose own pydantic ``Config``
    checks them in ``configure``; ``cls`` itself is left as it was.
    """
    language = spec.get("language") or "unknown"
    options = declared(RemoteOptions, spec.get("config_schema"), check=language != "python")
    attributes: dict[str, Any] = {
        "plugin_spec": dict(spec),
        "language": language,
        "allow_fallback": bool(spec.get("allow_fallback", True)),
        "Config": options,
        "__module__": cls.__module__,
        "__doc__": cls.__doc__,
    }
    if spec.get("version"):
        attributes["version"] = spec["version"]
    if spec.get("api_version"):
        attributes["api_version"] = spec["api_version"]
    return type(cls.__name__, (cls,), attributes)
