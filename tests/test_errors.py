"""One error hierarchy, one paragraph per error, one exit code per kind."""

from __future__ import annotations

import pytest

from dativo import errors
from dativo.errors import DativoError, PluginFailed


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.DativoError, 1),
        (errors.ConfigError, 2),
        (errors.PluginError, 3),
        (errors.PluginNotFound, 3),
        (errors.PluginIncompatible, 3),
        (errors.PluginFailed, 3),
        (errors.SchemaMismatch, 3),
        (errors.SandboxError, 3),
        (errors.ConnectionFailed, 1),
        (errors.CommitFailed, 4),
        (errors.CommitStateUnknown, 4),
    ],
)
def test_exit_codes(cls: type[DativoError], code: int) -> None:
    assert issubclass(cls, DativoError)
    assert cls.exit_code == code


def test_hierarchy() -> None:
    assert issubclass(errors.SchemaMismatch, errors.PluginFailed)
    assert issubclass(errors.PluginNotFound, errors.PluginError)
    classes = {n for n in errors.__all__ if isinstance(getattr(errors, n), type)}
    assert classes == {n for n in dir(errors) if isinstance(getattr(errors, n), type)
                       and issubclass(getattr(errors, n), DativoError)}


def test_message_names_job_plugin_and_fix() -> None:
    error = DativoError("it broke", job="orders", plugin="csv", hint="Fix it.")
    assert str(error) == "job 'orders', plugin 'csv': it broke. Fix it."
    assert str(DativoError("it broke?", hint="Fix it.")) == "it broke? Fix it."
    assert str(DativoError("plain")) == "plain"


def test_context_is_filled_in_once_and_never_mutates() -> None:
    error = DativoError("x", plugin="first")
    filled = error.with_context(job="orders", plugin="second")
    assert (filled.job, filled.plugin) == ("orders", "first")
    assert type(filled) is DativoError and filled is not error
    assert (error.job, error.plugin) == (None, "first")
    assert filled.with_context(job="other") is filled


def test_with_context_keeps_class_cause_and_notes() -> None:
    cause = ValueError("root")
    try:
        try:
            raise cause
        except ValueError as exc:
            raise PluginFailed("boom", hint="Fix it.") from exc
    except PluginFailed as caught:
        caught.add_note("seen in split 3")
        filled = caught.with_context(role="reader", stage="read", plugin="p")
        original = caught
    assert isinstance(filled, PluginFailed)
    assert (filled.role, filled.stage, filled.plugin, filled.hint) == ("reader", "read", "p", "Fix it.")
    assert filled.__cause__ is cause and filled.__notes__ == ["seen in split 3"]
    assert (original.role, original.stage, original.plugin) == ("", "", None)


@pytest.mark.parametrize(
    ("exc", "stage", "expected"),
    [
        (ValueError("bad"), "read", errors.PluginFailed),
        (MemoryError(), "write", errors.PluginFailed),
        (errors.ConnectionFailed("down"), "check", errors.ConnectionFailed),
        (errors.ConnectionFailed("down"), "commit", errors.CommitStateUnknown),
        (RuntimeError("lost"), "commit", errors.CommitStateUnknown),
        (errors.CommitFailed("refused"), "commit", errors.CommitFailed),
    ],
)
def test_translate_table(exc: BaseException, stage: str, expected: type[DativoError]) -> None:
    error = errors.translate(exc, role="writer", stage=stage, plugin="p", job="j")
    assert type(error) is expected
    assert (error.role, error.stage, error.plugin, error.job) == ("writer", stage, "p", "j")
    if not isinstance(exc, DativoError):
        assert type(exc).__name__ in error.message
    else:
        assert exc.role == "" and exc.plugin is None  # the caught error is left as it was


@pytest.mark.parametrize(
    ("exc", "stage", "kind"),
    [
        (errors.SchemaMismatch("x"), "read", "SchemaMismatch"),
        (errors.PluginNotFound("x"), "read", "PluginFailed"),
        (ValueError("x"), "read", "PluginFailed"),
        (errors.ConfigError("x"), "commit", "CommitStateUnknown"),
        (errors.CommitFailed("x"), "commit", "CommitFailed"),
    ],
)
def test_wire_kinds_round_trip(exc: BaseException, stage: str, kind: str) -> None:
    assert errors.error_kind(exc, stage) == kind
    back = errors.from_kind(kind, "m", role="reader", stage=stage)
    assert type(back) is errors.ERROR_KINDS[kind] and (back.role, back.stage) == ("reader", stage)
    assert type(errors.from_kind("Nonsense", "m", role="reader", stage="read")) is errors.PluginFailed


def test_side_and_hint() -> None:
    assert errors.side("reader") == "source.reader" and errors.side("writer") == "target.writer"
    assert "target.writer.fallback: default" in errors.fallback_hint("writer")


def test_plugin_failed_carries_role_and_stage() -> None:
    error = PluginFailed("boom", role="reader", stage="read", plugin="p")
    assert (error.role, error.stage, error.plugin) == ("reader", "read", "p")
    assert (DativoError("x").role, DativoError("x").stage) == ("", "")
