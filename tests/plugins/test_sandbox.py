"""The bubblewrap sandbox: hostile plugins are contained, the job fails clearly (or falls back), nothing is
published, the host stays healthy, and a sandbox that cannot start never runs anything unsandboxed."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from dativo.config import load_job
from dativo.engine import Engine
from dativo.errors import DativoError, PluginFailed, PluginNotFound, SandboxError, SchemaMismatch
from dativo.plugins import sandbox
from dativo.report import RunReport
from tests.conftest import read_parquet_dir
from tests.fixtures.postgres import PgSchema, PgServer
from tests.plugins.fixtures_flight import plugin_children

HOSTILE = "tests.plugins.hostile"
SECRET = "planted-secret-8d1f0c"

pytestmark = pytest.mark.skipif(not sandbox.probe().ok, reason=f"no working bubblewrap: {sandbox.probe().reason}")


def job_file(
    workdir: Path,
    reader: Any,
    *,
    options: dict[str, Any] | None = None,
    fallback: str = "fail",
    box: dict[str, Any] | None = None,
    extra: str = "",
) -> Path:
    """A job from data/orders.csv into out/items whose custom reader ``reader`` runs in the sandbox."""
    source = {
        "type": "csv",
        "path": "data/orders.csv",
        "reader": {
            "type": "custom",
            "implementation": reader,
            "fallback": fallback,
            "options": options or {},
            "sandbox": {"enabled": True, **(box or {})},
        },
    }
    path = workdir / "job.yaml"
    text = yaml.safe_dump(
        {"version": 1, "name": "items", "source": source, "target": {"type": "parquet", "path": "out/items"}}
    )
    path.write_text(text + extra)
    return path


def run(path: Path) -> RunReport:
    return Engine(load_job(path)).run()


def fails(path: Path, error: type[DativoError] = PluginFailed) -> DativoError:
    with pytest.raises(error) as caught:
        run(path)
    return caught.value


def outcomes(workdir: Path) -> dict[str, str]:
    """The published ``attempt -> outcome`` rows of a hostile reader."""
    table = read_parquet_dir(workdir / "out" / "items")
    return dict(zip(table.column("attempt").to_pylist(), table.column("outcome").to_pylist(), strict=True))


def nothing_published(workdir: Path) -> None:
    assert read_parquet_dir(workdir / "out" / "items").num_rows == 0


def leftover_cgroups() -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob("*/**/dativo-sandbox-*") if p.is_dir()]


@pytest.fixture(autouse=True)
def _healthy_host(workdir: Path) -> Iterator[None]:
    """After each test: no plugin or sandbox process, no cgroup, no thread left; the plugin never imported."""
    cgroups = set(leftover_cgroups())
    yield
    deadline = time.monotonic() + 5
    while plugin_children() or any(t.name.startswith(("dativo-flight", "dativo-plugin-std", "dativo-plugin-log",
                                                        "dativo-sandbox")) for t in threading.enumerate()):
        assert time.monotonic() < deadline, (plugin_children(), [t.name for t in threading.enumerate()])
        time.sleep(0.05)
    assert set(leftover_cgroups()) <= cgroups
    assert HOSTILE not in sys.modules  # untrusted code is never imported into the host


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


def test_a_granted_secret_that_is_not_set_is_a_config_error(workdir: Path) -> None:
    path = job_file(workdir, f"{HOSTILE}:ReadEnv", box={"secrets": ["NOT_SET_ANYWHERE_123"]})
    with pytest.raises(DativoError, match="secret 'NOT_SET_ANYWHERE_123' is not set"):
        load_job(path)


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's 127.0.0.1 that records what it receives."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                received.append(conn.recv(100))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
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


def test_tcp_allow_lists_are_refused(workdir: Path) -> None:
    path = job_file(workdir, f"{HOSTILE}:Connect", box={"network": ["db.internal:5432"]})
    with pytest.raises(DativoError, match="cannot filter TCP by host and port"):
        load_job(path)


def test_writes_outside_write_paths_fail(workdir: Path) -> None:
    (workdir / "scratch").mkdir()
    (workdir / "readonly").mkdir()
    targets = [str(workdir / "pwned.txt"), str(workdir / "readonly" / "pwned.txt"), "/usr/pwned.txt",
               str(Path(sys.prefix) / "pwned.txt"), str(workdir / "scratch" / "mine.txt")]
    path = job_file(workdir, f"{HOSTILE}:WriteFiles", options={"paths": targets},
                    box={"read_paths": ["readonly"], "write_paths": ["scratch"]})
    run(path)
    seen = outcomes(workdir)
    # the job's folder exists inside only as the private /tmp's parent of the binds: a write lands there
    assert seen[targets[0]] in ("WRITTEN", "DENIED:FileNotFoundError:No such file or directory")
    for target in targets[1:4]:
        assert seen[target].startswith("DENIED:OSError:Read-only file system"), (target, seen[target])
        assert not Path(target).exists()
    assert not (workdir / "pwned.txt").exists()
    assert seen[targets[4]] == "WRITTEN" and (workdir / "scratch" / "mine.txt").read_text() == "pwned"


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
    report = run(job_file(workdir, f"{HOSTILE}:WrongSchema", fallback="default"))
    assert report.fallback_used and read_parquet_dir(workdir / "out" / "items").num_rows == 3


# --- fails closed -------------------------------------------------------------------------------------------


def test_no_bubblewrap_fails_closed_even_with_fallback(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(workdir / "no-bwrap"))
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default"), SandboxError)
    assert "bubblewrap" in str(error) or "no-bwrap" in str(error)
    assert "apt-get install bubblewrap" in (error.hint or "")
    assert error.exit_code == 3
    nothing_published(workdir)


def test_a_bwrap_that_cannot_create_namespaces_fails_closed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = workdir / "bwrap"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'bubblewrap 0.8.0' && exit 0\n"
                    "echo 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv(sandbox.BWRAP_ENV, str(fake))
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default"), SandboxError)
    assert "No permissions to creating new namespace" in str(error)
    assert "unprivileged_userns_clone" in (error.hint or "")
    nothing_published(workdir)


def test_a_missing_read_path_fails_closed(workdir: Path) -> None:
    error = fails(job_file(workdir, f"{HOSTILE}:ReadEnv", fallback="default", box={"read_paths": ["nowhere"]}),
                  SandboxError)
    assert "read_paths" in str(error) and "nowhere" in str(error)


def test_native_libraries_are_refused(workdir: Path) -> None:
    error = fails(job_file(workdir, {"lib": "./libreader.so"}, fallback="default"), SandboxError)
    assert "native library" in str(error)


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


@pytest.fixture
def traversable_socket(pg_server: PgServer) -> Iterator[None]:
    """The private server's socket lives in its data directory (0700); let others pass through it.

    bwrap binds as the sandbox's unprivileged user, so like /run/postgresql the folder must be traversable.
    PostgreSQL checks the mode only when it starts; the mode is restored afterwards.
    """
    if pg_server.data_dir is None:
        yield
        return
    mode = pg_server.data_dir.stat().st_mode & 0o777
    pg_server.data_dir.chmod(mode | 0o001)
    try:
        yield
    finally:
        pg_server.data_dir.chmod(mode)


@pytest.mark.usefixtures("traversable_socket")
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
    status = sandbox.probe()
    assert status.ok and status.version.startswith("bubblewrap ")
    assert sandbox.probe() is status
    assert sandbox.status_row() == ("sandbox", status.version, "ok")
    assert os.path.basename(status.bwrap or "") == "bwrap"
