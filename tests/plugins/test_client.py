"""The host's Flight client (``dativo.plugins.client``): calls, and the Dativo error each failure becomes.

Streams, stalls and crashes are exercised through the engine in ``test_remote.py`` and ``test_process.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow.flight as fl
import pytest

from dativo.api import Context
from dativo.config import PluginCommand
from dativo.errors import CommitFailed, CommitStateUnknown, ConnectionFailed, DativoError, PluginFailed
from dativo.plugins.client import Connection
from dativo.plugins.process import launcher_for
from dativo.plugins.protocol import configure_body, error_line
from tests.plugins.fixtures_flight import plugin_children, served

FIXTURES = "tests.plugins.fixtures_flight"


@pytest.fixture
def conn() -> Iterator[Connection]:
    launcher = launcher_for(PluginCommand(**served(f"{FIXTURES}:Raises")))  # type: ignore[arg-type]
    connection = Connection(launcher, "reader", logging.getLogger("dativo.reader.raises"), job="items")
    yield connection
    connection.close(shutdown=True)
    assert plugin_children() == []


def configure(conn: Connection, **options: object) -> None:
    ctx = Context(job="items", run_id="r", plugin="raises", logger=logging.getLogger("t"))
    conn.action("configure", configure_body(options, ctx, role="reader"))


def test_a_reported_error_keeps_its_kind_and_gets_its_context(conn: Connection) -> None:
    assert conn.action("health")["ok"] is True
    configure(conn, kind="ConnectionFailed", stage="check")
    with pytest.raises(ConnectionFailed) as caught:
        conn.action("check", {"role": "reader"})
    error = caught.value
    assert (error.role, error.stage, error.job, error.plugin) == ("reader", "check", "items", conn.name)
    assert error.message == "the orders API refused the token" and error.hint == "Renew the token."
    with pytest.raises(PluginFailed, match="unknown action 'nonsense'") as unknown:
        conn.action("nonsense")
    assert unknown.value.stage == "nonsense" and "fallback: default" in str(unknown.value.hint)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (fl.FlightServerError(error_line("CommitFailed", "refused")), CommitFailed),
        (fl.FlightServerError(error_line("ConfigError", "bad table")), CommitStateUnknown),
        (fl.FlightServerError("no DATIVO-ERROR line at all"), CommitStateUnknown),
    ],
)
def test_a_commit_that_did_not_say_commit_failed_may_have_published(
    conn: Connection, failure: Exception, expected: type[DativoError]
) -> None:
    error = conn.failure(failure, "commit")
    assert type(error) is expected and (error.role, error.stage, error.job) == ("reader", "commit", "items")
    assert "--run-id" in str(error.hint) or expected is CommitFailed


def test_a_caught_error_is_never_changed(conn: Connection) -> None:
    original = ConnectionFailed("down")
    error = conn.failure(original, "check")
    assert (error.role, error.stage, error.plugin) == ("reader", "check", conn.name)
    assert (original.role, original.stage, original.plugin) == ("", "", None)


def test_a_dead_plugin_is_not_called_again(conn: Connection) -> None:
    assert conn.usable and conn.process is not None
    conn.process.kill()
    assert not conn.usable
    with pytest.raises(PluginFailed, match="the plugin process was killed by SIGKILL"):
        conn.action("check", {"role": "reader"})
    with pytest.raises(
        PluginFailed, match="cannot be called: the plugin is unusable since its connection broke"
    ):
        conn.action("check", {"role": "reader"})
