"""The one error hierarchy of Dativo.

Every error a user can cause or meet derives from :class:`DativoError`, carries the job and plugin it
concerns, and renders as one paragraph that says what happened and what to do. The CLI maps each class
to an exit code; nothing below ever needs a traceback to be understood.

This module is also the one place where failures are translated into that hierarchy
(:func:`translate`, :func:`commit_error`, :data:`ERROR_KINDS` for the wire), so the rules, such as "a commit
that failed in an unknown way may have published", are decided once. Context is added to an error by
:meth:`DativoError.with_context`, which returns a new exception and leaves the caught one as it was.
"""

from __future__ import annotations

import copy


class DativoError(Exception):
    """Base class of every Dativo error.

    Args:
        message: What went wrong, in one or two sentences.
        job: The job's name, when known.
        plugin: The implementation involved (``csv``, ``acme.readers:OrdersReader`` …), when any.
        hint: What the user should do about it.
        detail: Lines shown as they are after the paragraph (the end of a plugin process's stderr).
    """

    exit_code: int = 1
    role: str = ""
    """``reader`` or ``writer`` when the error came from one side of the pipeline (set by the engine)."""
    stage: str = ""
    """The contract method that failed (``check``, ``discover``, ``plan``, ``read``, ``write`` …)."""
    detail: str = ""
    """Shown after the paragraph, line by line (e.g. the last lines of a plugin process's stderr)."""

    def __init__(
        self,
        message: str,
        *,
        job: str | None = None,
        plugin: str | None = None,
        hint: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.job = job
        self.plugin = plugin
        self.hint = hint
        self.detail = detail

    def with_context(
        self,
        *,
        job: str | None = None,
        plugin: str | None = None,
        role: str | None = None,
        stage: str | None = None,
        detail: str | None = None,
    ) -> DativoError:
        """This error with the job, plugin, role, stage and detail filled in where they are not set yet.

        Returns:
            ``self`` when nothing is missing, else a new exception of the same class (the caught one is
            never changed: it may be shared, e.g. kept by a stream that failed).
        """
        changes = {
            name: value
            for name, value in (
                ("job", job), ("plugin", plugin), ("role", role), ("stage", stage), ("detail", detail)
            )
            if value and not getattr(self, name)
        }
        if not changes:
            return self
        error = copy.copy(self)
        error.__dict__.update(changes)
        error.__cause__, error.__suppress_context__ = self.__cause__, self.__suppress_context__
        error.__traceback__ = self.__traceback__
        return error

    def with_hint(self, hint: str | None) -> DativoError:
        """A copy of this error whose hint is ``hint`` (the caught one is never changed)."""
        error = copy.copy(self)
        error.hint = hint
        error.__cause__, error.__suppress_context__ = self.__cause__, self.__suppress_context__
        error.__traceback__ = self.__traceback__
        return error

    def __str__(self) -> str:
        where = []
        if self.job:
            where.append(f"job '{self.job}'")
        if self.plugin:
            where.append(f"plugin '{self.plugin}'")
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if self.hint:
            text = f"{text}{'' if text.endswith(('.', '?', '!')) else '.'} {self.hint}"
        return f"{text}\n{self.detail}" if self.detail else text


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


class PluginUntrusted(PluginError):
    """The plugin may not run: its files, version or signature are not what ``dativo.lock`` and the trusted
    publisher keys allow, or the trust policy refuses it (``plugins.policy``). Nothing of it was imported or
    started, and the built-in does not silently replace it."""


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


COMMIT_UNKNOWN_HINT = "Check the target, then rerun with the same --run-id: a committed run is a no-op."
COMMIT_RETRY_HINT = "Nothing was published; the run can be retried."

ERROR_KINDS: dict[str, type[DativoError]] = {
    "ConfigError": ConfigError,
    "ConnectionFailed": ConnectionFailed,
    "PluginFailed": PluginFailed,
    "SchemaMismatch": SchemaMismatch,
    "CommitFailed": CommitFailed,
    "CommitStateUnknown": CommitStateUnknown,
}
"""The error kinds an out-of-process or native plugin may report, and the class the host raises for each."""


def side(role: str) -> str:
    """The job-file block of a role: ``source.reader`` or ``target.writer``."""
    return "source.reader" if role == "reader" else "target.writer"


def fallback_hint(role: str) -> str:
    """What to do about a custom plugin that failed."""
    return f"Fix the plugin, or set {side(role)}.fallback: default to use the built-in {role}."


def commit_error(message: str, *, failed: bool = False, hint: str | None = None) -> DativoError:
    """The error of a commit that did not succeed.

    Args:
        message: What happened.
        failed: ``True`` only when the target said that nothing was published; anything else may have
            published, so its outcome is unknown.
        hint: Replaces the standard advice.
    """
    if failed:
        return CommitFailed(message, hint=hint or COMMIT_RETRY_HINT)
    return CommitStateUnknown(message, hint=hint or COMMIT_UNKNOWN_HINT)


def translate(
    exc: BaseException,
    *,
    role: str,
    stage: str,
    plugin: str | None = None,
    job: str | None = None,
    action: str | None = None,
    hint: str | None = None,
) -> DativoError:
    """The Dativo error for a failure of a plugin's ``stage`` (``check``, ``read``, ``commit`` …).

    The one translation table:

    ==========================================  ==================================================
    what failed                                 what the user sees
    ==========================================  ==================================================
    ``commit``: ``CommitFailed``                itself (nothing was published)
    ``commit``: anything else                   ``CommitStateUnknown`` (it may have published)
    any other stage: a ``DativoError``          itself, with the role, stage and plugin filled in
    any other stage: ``MemoryError``            ``PluginFailed``: the plugin ran out of memory
    any other stage: any other exception        ``PluginFailed`` naming the exception
    ==========================================  ==================================================

    Args:
        exc: What was raised.
        role: ``reader`` or ``writer``.
        stage: The contract method that failed.
        plugin: The implementation's name.
        job: The job's name.
        action: How the message names what failed (default: ``"<stage>()"``).
        hint: Replaces the standard advice of a translated foreign exception.

    Returns:
        A new exception (or ``exc`` itself when it needs nothing added); ``exc`` is never changed.
    """
    what = action or f"{stage}()"
    error: DativoError
    if stage == "commit" and not isinstance(exc, CommitFailed | CommitStateUnknown):
        detail = exc.message if isinstance(exc, DativoError) else str(exc)
        error = commit_error(f"{what} raised {type(exc).__name__}: {detail}", hint=hint)
    elif isinstance(exc, DativoError):
        error = exc
    elif isinstance(exc, MemoryError):
        error = PluginFailed(
            f"{what} raised MemoryError: the plugin ran out of memory",
            hint=hint or f"Give the {role} more memory or smaller batches. {fallback_hint(role)}",
        )
    else:
        error = PluginFailed(f"{what} raised {type(exc).__name__}: {exc}", hint=hint or fallback_hint(role))
    return error.with_context(job=job, plugin=plugin, role=role, stage=stage)


def error_kind(exc: BaseException, stage: str) -> str:
    """The wire kind (a key of :data:`ERROR_KINDS`) that reports ``exc``, raised during ``stage``."""
    if isinstance(exc, DativoError):
        for cls in type(exc).__mro__:
            if ERROR_KINDS.get(cls.__name__) is cls:
                if stage == "commit" and cls not in (CommitFailed, CommitStateUnknown):
                    break
                return cls.__name__
    return "CommitStateUnknown" if stage == "commit" else "PluginFailed"


def from_kind(kind: str, message: str, *, role: str, stage: str, hint: str | None = None) -> DativoError:
    """The error a plugin reported by wire kind (see :func:`error_kind`); an unknown kind is a failure."""
    cls = ERROR_KINDS.get(kind, PluginFailed)
    if kind not in ERROR_KINDS:
        message = f"{message} (unknown error kind '{kind}')"
    if stage == "commit":
        return commit_error(message, failed=cls is CommitFailed, hint=hint).with_context(role=role, stage=stage)
    if issubclass(cls, PluginFailed):
        return cls(message, role=role, stage=stage, hint=hint or fallback_hint(role))
    return cls(message, hint=hint).with_context(role=role, stage=stage)


__all__ = [
    "COMMIT_RETRY_HINT",
    "COMMIT_UNKNOWN_HINT",
    "ERROR_KINDS",
    "CommitFailed",
    "CommitStateUnknown",
    "ConfigError",
    "ConnectionFailed",
    "DativoError",
    "PluginError",
    "PluginFailed",
    "PluginIncompatible",
    "PluginNotFound",
    "PluginUntrusted",
    "SandboxError",
    "SchemaMismatch",
    "commit_error",
    "error_kind",
    "fallback_hint",
    "from_kind",
    "side",
    "translate",
]
