"""The one error hierarchy of Dativo.

Every error a user can cause or meet derives from :class:`DativoError`, carries the job and plugin it
concerns, and renders as one paragraph that says what happened and what to do. The CLI maps each class
to an exit code; nothing below ever needs a traceback to be understood.
"""

from __future__ import annotations


class DativoError(Exception):
    """Base class of every Dativo error.

    Args:
        message: What went wrong, in one or two sentences.
        job: The job's name, when known.
        plugin: The implementation involved (``csv``, ``acme.readers:OrdersReader`` …), when any.
        hint: What the user should do about it.
    """

    exit_code: int = 1
    role: str = ""
    """``reader`` or ``writer`` when the error came from one side of the pipeline (set by the engine)."""
    stage: str = ""
    """The contract method that failed (``check``, ``discover``, ``plan``, ``read``, ``write`` …)."""

    def __init__(
        self,
        message: str,
        *,
        job: str | None = None,
        plugin: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job = job
        self.plugin = plugin
        self.hint = hint

    def with_context(self, *, job: str | None = None, plugin: str | None = None) -> DativoError:
        """Fill in the job and plugin if they are not set yet; returns ``self``."""
        self.job = self.job or job
        self.plugin = self.plugin or plugin
        return self

    def __str__(self) -> str:
        where = []
        if self.job:
            where.append(f"job '{self.job}'")
        if self.plugin:
            where.append(f"plugin '{self.plugin}'")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if self.hint:
            text = f"{text}{'' if text.endswith(('.', '?', '!')) else '.'} {self.hint}"
        return text


class ConfigError(DativoError):
    """The job file is malformed or names something that does not exist."""

    exit_code = 2


class PluginError(DativoError):
    """Base class of errors caused by a reader or writer implementation."""

    exit_code = 3


class PluginNotFound(PluginError):
    """No built-in, entry point or importable class matches ``implementation``."""


class PluginIncompatible(PluginError):
    """The plugin exists but does not fit: wrong base class, API version or configuration model."""


class PluginFailed(PluginError):
    """The plugin raised, or returned something that is not Arrow data."""

    def __init__(self, message: str, *, role: str = "", stage: str = "", **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)
        self.role = role
        self.stage = stage


class SchemaMismatch(PluginFailed):
    """A batch does not match the schema the reader declared (or the first batch established)."""


class ConnectionFailed(DativoError):
    """A source or target cannot be reached, or refused the credentials."""

    exit_code = 1


class SandboxError(DativoError):
    """The sandbox that the job asked for cannot be started; the job never runs unsandboxed."""

    exit_code = 3


class CommitFailed(DativoError):
    """The commit was refused and nothing was published; retrying the run is safe."""

    exit_code = 4


class CommitStateUnknown(DativoError):
    """The commit may or may not have been published; rerun with the same ``--run-id`` to settle it."""

    exit_code = 4


__all__ = [
    "CommitFailed",
    "CommitStateUnknown",
    "ConfigError",
    "ConnectionFailed",
    "DativoError",
    "PluginError",
    "PluginFailed",
    "PluginIncompatible",
    "PluginNotFound",
    "SandboxError",
    "SchemaMismatch",
]
