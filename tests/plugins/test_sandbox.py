"""The bubblewrap sandbox: hostile plugins are contained, the job fails clearly (or falls back), nothing is
published, the host stays healthy, and a sandbox that cannot start never runs anything unsandboxed."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from dativo.config import load_job
from dativo.errors import DativoError, PluginNotFound, SandboxError, SchemaMismatch
from dativo.plugins import bwrap, sandbox
from tests.conftest import read_parquet_dir, source_csv
from tests.fixtures.postgres import PgSchema
from tests.plugins.sandboxing import (
    HOSTILE,
    SECRET,
    fails,
    healthy_host,
    job_file,
    needs_bwrap,
    needs_no_sandbox,
    nothing_published,
    outcomes,
    recording,
    run,
)

pytestmark = [needs_bwrap, pytest.mark.usefixtures(healthy_host.__name__)]


# --- what it may not see ------------------------------------------------------------------------------------


def test_host_files_outside_read_paths_are_invisible(workdir: Path) -> None:
    planted = workdir / "secret.txt"
    planted.write_text(SECRET)
    secrets_file = workdir / "db-password"
    secrets_file.write_text("job-secret-0a9b8c7d")
    allowed = workdir / "allowed"
    allowed.mkdir()
    (allowed / "ok.txt").write_text("visible")
    targets = [str(planted), "/etc/shadow", str(secrets_file), str(workdir / "job.yaml"), "/root/.bash_history",
               str(allowed / "ok.txt")]
    path = job_file(workdir, f"{HOSTILE}:ReadFiles", options={"paths": targets}, box={"read_paths": ["allowed"]},
                    extra=f"# password: ${{file:{secrets_file}}}\n")
    run(path)
    seen = outcomes(workdir)
    assert seen[str(allowed / "ok.txt")] == "READ:visible"  # the positive control: read_paths work
    for target in targets[:-1]:
        assert seen[target].startswith("DENIED:FileNotFoundError"), (target, seen[target])
    text = repr(seen)
    assert SECRET not in text and "job-secret" not in text and "root:" not in text


def test_host_environment_is_invisible_but_granted_secrets_are_passed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOST_ONLY_TOKEN", "host-token-71c2e9")
    monkeypatch.setenv("GRANTED_TOKEN", "granted-token-5f3a1b")
    path = job_file(workdir, f"{HOSTILE}:ReadEnv", options={"names": ["HOST_ONLY_TOKEN", "GRANTED_TOKEN", "HOME"]},
                    box={"secrets": ["GRANTED_TOKEN"]})
    run(path)
    seen = outcomes(workdir)
    assert seen["HOST_ONLY_TOKEN"] == "<unset>"
    assert seen["GRANTED_TOKEN"] == "granted-token-5f3a1b"  # the positive control
    assert seen["HOME"] == "/tmp"
    names = {item.split("=", 1)[0] for item in seen["environ"].split()}
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE",
                     "DATIVO_FLIGHT_SOCKET", "DATIVO_PROTOCOL", "DATIVO_SANDBOX_MEMORY_MB", "GRANTED_TOKEN",
                     "LC_CTYPE", "PWD"}, names


@needs_no_sandbox
def test_a_granted_secret_that_is_not_set_is_a_config_error(workdir: Path) -> None:
    path = job_file(workdir, f"{HOSTILE}:ReadEnv", box={"secrets": ["NOT_SET_ANYWHERE_123"]})
    with pytest.raises(DativoError, match="secret 'NOT_SET_ANYWHERE_123' is not set"):
        load_job(path)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's 127.0.0.1 that records what it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1], recording(server)
    server.close()


def test_no_network_by_default(workdir: Path, listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    run(job_file(workdir, f"{HOSTILE}:Connect", options={"port": port}))
    seen = outcomes(workdir)
    assert seen["127.0.0.1"].startswith("DENIED:ConnectionRefusedError")  # its own, empty loopback
    assert seen["1.1.1.1"].startswith("DENIED:OSError")  # no route at all
    assert received == []


def test_network_true_shares_the_hosts_network(workdir: Path, listener: tuple[int, list[bytes]]) -> None:
    port, received = listener
    run(job_file(workdir, f"{HOSTILE}:Connect", options={"port": port}, box={"network": True}))
    assert outcomes(workdir)["127.0.0.1"] == "CONNECTED"  # the positive control
    assert received == [b"exfiltrated\n"]


@needs_no_sandbox
def test_tcp_allow_lists_are_refused(workdir: Path) -> None:
    path = job_file(workdir, f"{HOSTILE}:Connect", box={"network": ["db.internal:5432"]})
    with pytest.raises(DativoError, match="cannot filter TCP by host and port"):
        load_job(path)


def test_writes_outside_write_paths_fail(workdir: Path) -> None:
    (workdir / "scratch").mkdir()
    os.chown(workdir / "scratch", bwrap.SANDBOX_UID, bwrap.SANDBOX_GID)  # what a write path needs (as root)
    (workdir / "readonly").mkdir()
    targets = [str(workdir / "pwned.txt"), str(workdir / "readonly" / "pwned.txt"), "/usr/pwned.txt",
               str(Path(sys.prefix) / "pwned.txt"), "/pwned.txt", str(workdir / "scratch" / "mine.txt")]
    path = job_file(workdir, f"{HOSTILE}:WriteFiles", options={"paths": targets},
                    box={"read_paths": ["readonly"], "write_paths": ["scratch"]})
    run(path)
    seen = outcomes(workdir)
    # the job's folder exists inside only as an empty folder on the way to the binds, which is root's; the
    # root of the sandbox and every bind but write_paths are read-only
    for target in targets[:5]:
        assert seen[target] in ("DENIED:PermissionError:Permission denied", "DENIED:OSError:Read-only file system"), \
            (target, seen[target])
        assert not Path(target).exists()
    assert seen[targets[5]] == "WRITTEN" and (workdir / "scratch" / "mine.txt").read_text() == "pwned"
    assert (workdir / "scratch" / "mine.txt").stat().st_uid == bwrap.identity().uid != 0


def test_a_relative_write_outside_every_bind_fails_instead_of_vanishing(workdir: Path) -> None:
    # the job's folder is not bound: a relative path must not land in the sandbox's private /tmp, where it
    # would be thrown away while the run reports success
    run(job_file(workdir, f"{HOSTILE}:WriteFiles", options={"paths": ["out/relative.txt", "relative.txt"]}))
    seen = outcomes(workdir)
    for target in ("out/relative.txt", "relative.txt"):
        assert seen[target].startswith(("DENIED:PermissionError", "DENIED:OSError", "DENIED:FileNotFoundError")), \
            (target, seen[target])


def test_a_write_path_the_plugin_cannot_write_fails_closed(workdir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("as another user, the plugin is that user and writes what it may write")
    (workdir / "scratch").mkdir(mode=0o755)
    error = fails(job_file(workdir, f"{HOSTILE}:WriteFiles", fallback="default", box={"write_paths": ["scratch"]}),
                  SandboxError)
    assert "write_paths" in str(error) and "uid 65534" in str(error) and "chown 65534:65534" in (error.hint or "")
    nothing_published(workdir)


# --- limits -------------------------------------------------------------------------------------------------


def test_memory_beyond_memory_mb_fails_the_plugin(workdir: Path) -> None:
    error = fails(job_file(workdir, f"{HOSTILE}:Allocate", options={"mb": 4096}, box={"memory_mb": 1536}))
    assert "MemoryError" in str(error) and "sandbox.memory_mb" in str(error)
    assert error.role == "reader" and error.stage == "read"
    nothing_published(workdir)


def test_cpu_beyond_cpu_seconds_kills_the_plugin(workdir: Path) -> None:
    started = time.monotonic()
    error = fails(job_file(workdir, f"{HOSTILE}:Spin", box={"cpu_seconds": 2}))
    assert time.monotonic() - started < 30
    assert "source.reader.sandbox.cpu_seconds (2 s of CPU time)" in str(error), str(error)
    nothing_published(workdir)


def test_wall_clock_beyond_timeout_s_kills_the_plugin(workdir: Path) -> None:
    started = time.monotonic()
    error = fails(job_file(workdir, f"{HOSTILE}:Sleep", box={"timeout_s": 3}))
    assert time.monotonic() - started < 20
    assert "source.reader.sandbox.timeout_s (3 s, wall clock)" in str(error), str(error)
    nothing_published(workdir)


def test_a_limit_violation_falls_back_to_the_built_in(workdir: Path) -> None:
    source_csv(workdir, "attempt", "outcome")  # the built-in reads what the plugin would have
    report = run(job_file(workdir, f"{HOSTILE}:Sleep", box={"timeout_s": 2}, fallback="default"))
    assert report.fallback_used and "timeout_s" in str(report.fallback_reason)
    assert report.reader is not None and report.reader.implementation == "csv"
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 3


def test_a_fork_bomb_is_bounded_by_max_processes(workdir: Path) -> None:
    run(job_file(workdir, f"{HOSTILE}:ForkBomb", box={"max_processes": 40}))
    forks, error = outcomes(workdir)["forks"].split(":", 1)
    assert 0 <= int(forks) < 40 and "BlockingIOError" in error, (forks, error)


def test_a_segfault_is_a_plugin_failure(workdir: Path) -> None:
    error = fails(job_file(workdir, f"{HOSTILE}:Segfault"))
    assert "SIGSEGV" in str(error), str(error)
    nothing_published(workdir)


def test_a_flood_of_output_leaves_the_host_healthy(workdir: Path) -> None:
    started = time.monotonic()
    run(job_file(workdir, f"{HOSTILE}:Flood"))
    assert outcomes(workdir) == {"flood": "done"}
    assert time.monotonic() - started < 60


def test_a_wrong_schema_is_refused(workdir: Path) -> None:
    fails(job_file(workdir, f"{HOSTILE}:WrongSchema"), SchemaMismatch)
    nothing_published(workdir)
    source_csv(workdir, "attempt", "outcome")  # the built-in reads what the plugin declared
    report = run(job_file(workdir, f"{HOSTILE}:WrongSchema", fallback="default"))
    assert report.fallback_used and read_parquet_dir(workdir / "out" / "items").num_rows == 3


# --- fails closed -------------------------------------------------------------------------------------------


@needs_no_sandbox
def test_no_bubblewrap_fails_closed_even_with_fallback(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bwrap.BWRAP_ENV, str(workdir / "no-bwrap"))
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default"), SandboxError)
    assert "bubblewrap" in str(error) or "no-bwrap" in str(error)
    assert "apt-get install bubblewrap" in (error.hint or "")
    assert error.exit_code == 3
    nothing_published(workdir)


@needs_no_sandbox
def test_a_bwrap_that_cannot_create_namespaces_fails_closed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = workdir / "bwrap"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bubblewrap 0.8.0' && exit 0\n"
                    "echo 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(bwrap.BWRAP_ENV, str(fake))
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default"), SandboxError)
    assert "No permissions to creating new namespace" in str(error)
    assert "unprivileged_userns_clone" in (error.hint or "")
    nothing_published(workdir)


def test_a_missing_read_path_fails_closed(workdir: Path) -> None:
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default", box={"read_paths": ["nowhere"]}),
                  SandboxError)
    assert "read_paths" in str(error) and "nowhere" in str(error)


@needs_no_sandbox
def test_native_libraries_are_refused(workdir: Path) -> None:
    error = fails(job_file(workdir, {"lib": "./libreader.so"}, fallback="default"), SandboxError)
    assert "native library" in str(error)


@needs_no_sandbox
def test_an_unknown_plugin_is_not_found_without_importing(workdir: Path) -> None:
    error = fails(job_file(workdir, "no_such_pkg.mod:Reader"), PluginNotFound)
    assert "no_such_pkg" in str(error)


def test_a_sandboxed_command(workdir: Path) -> None:
    from tests.plugins.fixtures_flight import ROOT, serve_command

    command = {"command": serve_command(f"{HOSTILE}:ReadFiles"), "env": {"PYTHONPATH": str(ROOT)}}
    (workdir / "secret.txt").write_text(SECRET)
    run(job_file(workdir, command, options={"paths": [str(workdir / "secret.txt")]},
                 box={"read_paths": [str(ROOT / "tests")]}))
    assert outcomes(workdir)[str(workdir / "secret.txt")].startswith("DENIED:FileNotFoundError")


# --- a benign plugin works the same inside ------------------------------------------------------------------


def postgres_job(workdir: Path, schema: PgSchema, *, sandboxed: bool, name: str) -> Path:
    params = conninfo_to_dict(schema.dsn)
    host, port = params.get("host") or "/tmp", params.get("port") or "5432"
    if not host.startswith("/"):
        pytest.skip("the test server is reached over TCP, not a Unix socket")
    reader: dict[str, Any] = {"type": "custom", "implementation": "postgres-python", "fallback": "fail"}
    if sandboxed:
        reader["sandbox"] = {"enabled": True, "network": [f"unix:{host}/.s.PGSQL.{port}"]}
    job = {
        "version": 1,
        "name": name,
        "source": {"type": "postgres", "connection": {"dsn": schema.dsn}, "tables": [schema.table("items")],
                   "reader": reader},
        "target": {"type": "parquet", "path": f"out/{name}"},
    }
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_postgres_through_a_bound_unix_socket_gives_the_same_rows(workdir: Path, pg_schema: PgSchema) -> None:
    pg_schema.execute("CREATE TABLE items (id bigint primary key, name text, price numeric(10,2), at timestamptz)")
    pg_schema.execute("INSERT INTO items SELECT i, 'n' || i, i * 1.25, '2024-01-01'::timestamptz + i * interval '1 h'"
                      " FROM generate_series(1, 2000) i")
    plain = run(postgres_job(workdir, pg_schema, sandboxed=False, name="plain"))
    boxed = run(postgres_job(workdir, pg_schema, sandboxed=True, name="boxed"))
    assert boxed.reader is not None and boxed.reader.origin == "sandbox" and plain.reader.origin == "builtin"
    expected = read_parquet_dir(workdir / "out" / "plain").sort_by("id")
    got = read_parquet_dir(workdir / "out" / "boxed").sort_by("id")
    assert got.num_rows == 2000 and got.equals(expected)


def test_postgres_without_the_socket_cannot_connect(workdir: Path, pg_schema: PgSchema) -> None:
    pg_schema.execute("CREATE TABLE items (id bigint primary key)")
    path = postgres_job(workdir, pg_schema, sandboxed=True, name="boxed")
    job = yaml.safe_load(path.read_text())
    job["source"]["reader"]["sandbox"]["network"] = False
    path.write_text(yaml.safe_dump(job))
    with pytest.raises(DativoError):
        run(path)


def test_probe_is_cached_and_reports_the_version() -> None:
    status = bwrap.probe()
    assert status.ok and status.version.startswith("bubblewrap ")
    assert bwrap.probe() is status
    assert sandbox.status_row() == ("sandbox", status.version, "ok")
    assert os.path.basename(status.bwrap or "") == "bwrap"


BESIDE_THE_JOB = '''
import pyarrow as pa
from dativo.api import Reader

class Peek(Reader):
    """Reports whether it can read the job file that sits beside it."""

    schema = pa.schema([("id", pa.int64()), ("saw", pa.string())])

    def read(self, split):
        try:
            with open(__file__.rsplit("/", 1)[0] + "/job.yaml") as handle:
                saw = "READ:" + handle.read()[:20]
        except OSError as exc:
            saw = "DENIED:" + type(exc).__name__
        yield pa.record_batch([pa.array([1], pa.int64()), pa.array([saw])], schema=self.schema)
'''


def test_a_single_file_plugin_beside_the_job_runs_sandboxed_and_alone(workdir: Path) -> None:
    (workdir / "peek_beside.py").write_text(BESIDE_THE_JOB)
    run(job_file(workdir, "peek_beside:Peek"))
    assert "peek_beside" not in sys.modules  # never imported into the host
    [saw] = read_parquet_dir(workdir / "out" / "items").column("saw").to_pylist()
    assert saw == "DENIED:FileNotFoundError"  # only its own file is bound, not the job's folder
