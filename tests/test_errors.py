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
    assert set(errors.__all__) == {n for n in dir(errors) if isinstance(getattr(errors, n), type)
                                   and issubclass(getattr(errors, n), DativoError)}


def test_message_names_job_plugin_and_fix() -> None:
    error = DativoError("it broke", job="orders", plugin="csv", hint="Fix it.")
    assert str(error) == "job 'orders', plugin 'csv': it broke. Fix it."
    assert str(DativoError("it broke?", hint="Fix it.")) == "it broke? Fix it."
    assert str(DativoError("plain")) == "plain"


def test_context_is_filled_in_once() -> None:
    error = DativoError("x", plugin="first")
    assert error.with_context(job="orders", plugin="second") is error
    assert (error.job, error.plugin) == ("orders", "first")


def test_plugin_failed_carries_role_and_stage() -> None:
    error = PluginFailed("boom", role="reader", stage="read", plugin="p")
    assert (error.role, error.stage, error.plugin) == ("reader", "read", "p")
    assert (DativoError("x").role, DativoError("x").stage) == ("", "")
