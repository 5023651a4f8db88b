"""Connections: clear, password-free errors; every connection closed by close()."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dativo.errors import ConfigError, ConnectionFailed
from dativo.readers.postgres import redact_dsn
from tests.fixtures.postgres import PASSWORD, PgSchema


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("postgresql://ann:hunter2@db:5432/app", "postgresql://ann:***@db:5432/app"),
        ("postgres://ann:p%40ss@db/app?sslmode=require", "postgres://ann:***@db/app?sslmode=require"),
        (
            "postgresql://ann@db/app?password=hunter2&sslmode=disable",
            "postgresql://ann@db/app?password=***&sslmode=disable",
        ),
        ("postgresql://db/app", "postgresql://db/app"),
        ("host=db user=ann password=hunter2 dbname=app", "host=db user=ann password=*** dbname=app"),
        ("host=db password = 'a b\\' c' dbname=app", "host=db password = *** dbname=app"),
    ],
)
def test_redact_dsn(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


def test_check_passes_on_a_live_server(pg_dsn: str, reader_cls, make_reader) -> None:
    make_reader(reader_cls, pg_dsn, tables=["x"]).check()


def test_wrong_password_names_the_problem_without_the_password(
    pg_password_dsn: str, reader_cls, make_reader
) -> None:
    make_reader(reader_cls, pg_password_dsn, tables=["x"]).check()  # the right password works
    wrong_password = "Wr0ng-Secret-xyz"
    for dsn in (
        make_conninfo(pg_password_dsn, password=wrong_password),
        "postgresql://dativo_pw_user:"
        + wrong_password
        + "@/postgres?host="
        + conninfo_to_dict(pg_password_dsn).get("host", ""),
    ):
        reader = make_reader(reader_cls, dsn, tables=["x"])
        with pytest.raises(ConnectionFailed) as caught:
            reader.check()
        message = str(caught.value)
        assert "password authentication failed" in message
        assert "password" in (caught.value.hint or "")
        assert wrong_password not in message and PASSWORD not in message
        assert "\n" not in message
        with pytest.raises(ConnectionFailed) as caught:
            reader.discover()
        assert wrong_password not in str(caught.value)


def test_unreachable_server(reader_cls, make_reader) -> None:
    # Port 1 on the loopback refuses at once.
    reader = make_reader(
        reader_cls, "postgresql://ann:TopSecret99@127.0.0.1:1/app", tables=["x"], connect_timeout=2
    )
    with pytest.raises(ConnectionFailed) as caught:
        reader.check()
    message = str(caught.value)
    assert "Cannot connect to PostgreSQL at postgresql://ann:***@127.0.0.1:1/app" in message
    assert "TopSecret99" not in message
    assert "running and reachable" in message


def test_missing_database(pg_dsn: str, reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, make_conninfo(pg_dsn, dbname="no_such_db"), tables=["x"])
    with pytest.raises(ConnectionFailed, match=r'database "no_such_db" does not exist.*Create the database'):
        reader.check()


def test_malformed_dsn_is_a_config_error(reader_cls, make_reader) -> None:
    reader = make_reader(reader_cls, "host=db password=TopSecret99 nonsense", tables=["x"])
    with pytest.raises(ConfigError) as caught:
        reader.check()
    assert "TopSecret99" not in str(caught.value)


def _dativo_sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'dativo' AND pid <> pg_backend_pid()"
        ).fetchone()
    return row[0] if row else 0


def test_close_ends_every_connection(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    pg_schema.execute("CREATE TABLE t (id int PRIMARY KEY)")
    pg_schema.execute("INSERT INTO t SELECT generate_series(1, 10)")
    reader = make_reader(
        reader_cls, pg_schema.dsn, tables=[pg_schema.table("t")], parallelism=2, batch_rows=2
    )
    [dataset] = reader.discover()
    splits = reader.plan(dataset, None)
    streams = [reader.read(s) for s in splits]
    for stream in streams:
        stream.read_next_batch()  # started, not finished: the split connections are open
    assert _dativo_sessions(pg_schema.dsn) == 1 + len(splits)
    reader.close()
    for stream in streams:
        stream.close()
    deadline = time.monotonic() + 5
    while _dativo_sessions(pg_schema.dsn) and time.monotonic() < deadline:
        time.sleep(0.05)  # backends exit asynchronously after the client hangs up
    assert _dativo_sessions(pg_schema.dsn) == 0


def test_a_connection_the_server_ends_mid_read_says_so(pg_schema: PgSchema, reader_cls, make_reader) -> None:
    """The server ends a split's session after its first batch (as a restart, a shutdown or an administrator
    would): one clear ConnectionFailed of the read, and what to do."""
    pg_schema.execute("CREATE TABLE big (id int PRIMARY KEY, pad text NOT NULL)")
    pg_schema.execute("INSERT INTO big SELECT g, repeat('x', 40) FROM generate_series(1, 1000000) g")
    reader = make_reader(reader_cls, pg_schema.dsn, tables=[pg_schema.table("big")], batch_rows=1000,
                         batch_size_bytes=65536)
    [dataset] = reader.discover()
    [split] = reader.plan(dataset, None)
    stream = reader.read(split)
    stream.read_next_batch()  # mid-read: far more than the socket buffers is still to come
    with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
        ended = conn.execute(  # the split's session: the newest of the reader's (the first is its snapshot's)
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'dativo' "
            "AND pid <> pg_backend_pid() ORDER BY backend_start DESC LIMIT 1").fetchall()
    assert ended == [(True,)]
    with pytest.raises(ConnectionFailed) as caught:
        for _ in stream:
            pass
    error = caught.value
    assert (error.role, error.stage) == ("reader", "read")
    assert f"Reading {pg_schema.table('big')} failed: the server ended the connection mid-read" in error.message
    assert "terminating connection due to administrator command" in error.message or \
        "server closed the connection unexpectedly" in error.message
    assert "Nothing was published: rerun the job once the server is back" in (error.hint or "")
