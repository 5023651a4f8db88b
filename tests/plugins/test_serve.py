"""``dativo plugin serve``: a Python reader or writer behind the out-of-process protocol, seen by a raw client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as fl
import pytest

from dativo.plugins.protocol import (
    PROTOCOL_VERSION,
    dataset_to_json,
    parse_error,
    schema_from_b64,
    schema_to_b64,
    split_to_json,
)
from dativo.api import Dataset, Split
from tests.plugins.fixtures_flight import ROOT, SCHEMA, serve_command

FIXTURES = "tests.plugins.fixtures_flight"


class Served:
    """A plugin served by a child process, and a Flight client to it."""

    def __init__(self, *targets: str, args: tuple[str, ...] = (), socket: Path | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DATIVO_FLIGHT_SOCKET", None)
        if socket is not None:
            env.update(DATIVO_FLIGHT_SOCKET=str(socket), DATIVO_PROTOCOL="1")
        self.process = subprocess.Popen(
            [*serve_command(*targets), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"no handshake: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
        self.handshake = json.loads(line)
        self.client = fl.FlightClient(self.handshake["location"])

    def action(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        results = list(self.client.do_action(fl.Action(kind, json.dumps(body or {}).encode())))
        return json.loads(results[0].body.to_pybytes()) if results else {}

    def error(self, kind: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        with pytest.raises(fl.FlightError) as caught:
            self.action(kind, body)
        info = parse_error(str(caught.value))
        assert info is not None, str(caught.value)
        return info

    def configure(
        self, role: str, options: dict[str, Any] | None = None, settings: dict[str, Any] | None = None
    ) -> None:
        self.action(
            "configure",
            {
                "role": role,
                "options": options or {},
                "settings": settings or {},
                "context": {"job": "j", "run_id": "r1", "plugin": "p", "parallelism": 1},
            },
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.kill()
        self.client.close()
        return self.process.wait(10)


@pytest.fixture
def served() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*targets: str, **kwargs: Any) -> Served:
        started.append(Served(*targets, **kwargs))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def test_handshake_health_and_spec(served) -> None:
    s = served(f"{FIXTURES}:Numbers")
    assert s.handshake["dativo_flight"] == PROTOCOL_VERSION
    assert s.handshake["location"].startswith("grpc://127.0.0.1:")
    assert s.handshake["version"] == "2.0.1"
    assert s.action("health") == {"ok": True, "dativo_flight": PROTOCOL_VERSION}
    spec = s.action("spec", {"role": "reader"})
    assert spec["roles"] == ["reader"] and spec["language"] == "python" and spec["version"] == "2.0.1"
    assert spec["api_version"] == ">=1,<2" and spec["allow_fallback"] is True
    assert set(spec["config_schema"]["properties"]) == {"rows", "batch_size"}
    assert {a.type for a in s.client.list_actions()} >= {"configure", "commit", "shutdown"}


def test_serves_a_reader_and_a_writer_together(served, tmp_path: Path) -> None:
    s = served(f"{FIXTURES}:Numbers", "parquet")  # parquet is both: it takes the free role
    assert s.action("spec")["roles"] == ["reader", "writer"]
    s.configure("reader", {"rows": 3})
    s.configure("writer", settings={"path": str(tmp_path / "out")})
    s.action("check")  # no role: both


def test_listens_on_the_socket_the_host_gives(served, tmp_path: Path) -> None:
    s = served(f"{FIXTURES}:Numbers", socket=tmp_path / "p.sock")
    assert s.handshake["location"] == f"grpc+unix://{tmp_path / 'p.sock'}"
    assert s.action("health")["ok"] is True


def test_listen_cannot_move_it_off_the_host_s_socket(served, tmp_path: Path) -> None:
    """The host connects only to the socket it gave: --listen is for plugins that run on their own."""
    s = served(f"{FIXTURES}:Numbers", args=("--listen", "grpc://127.0.0.1:0"), socket=tmp_path / "p.sock")
    assert s.handshake["location"] == f"grpc+unix://{tmp_path / 'p.sock'}"
    assert s.action("health")["ok"] is True
    s.stop()
    assert "ignoring --listen grpc://127.0.0.1:0" in s.process.stderr.read().decode()  # type: ignore[union-attr]


def test_read_streams_every_batch(served) -> None:
    s = served(f"{FIXTURES}:Numbers")
    s.configure("reader", {"rows": 5, "batch_size": 2})
    datasets = s.action("discover")["datasets"]
    assert datasets[0]["name"] == "j" and schema_from_b64(datasets[0]["schema"]).equals(SCHEMA)
    splits = s.action("plan", {"dataset": datasets[0], "state": None})["splits"]
    assert splits == [{"dataset": "j", "id": "0", "params": {}}]
    reader = s.client.do_get(fl.Ticket(json.dumps({"split": splits[0]}).encode()))
    chunks = [c.data for c in reader]
    assert [c.num_rows for c in chunks] == [2, 2, 1]
    assert pa.Table.from_batches(chunks).column("id").to_pylist() == [1, 2, 3, 4, 5]


def test_configure_validates_options(served) -> None:
    s = served(f"{FIXTURES}:Numbers")
    info = s.error(
        "configure", {"role": "reader", "options": {"rows": "many"}, "settings": {}, "context": {}}
    )
    assert info["kind"] == "ConfigError"
    assert "source.reader.options.rows" in info["message"]
    info = s.error("configure", {"role": "writer", "options": {}, "settings": {}, "context": {}})
    assert info["kind"] == "PluginFailed" and "serves no writer" in info["message"]


def test_calls_before_configure_are_refused(served) -> None:
    s = served(f"{FIXTURES}:Numbers")
    info = s.error("discover")
    assert info["kind"] == "PluginFailed" and "configure" in info["message"]
    assert s.error("frobnicate")["message"] == "unknown action 'frobnicate'"


@pytest.mark.parametrize(
    ("kind", "stage", "expected"),
    [
        ("ConnectionFailed", "check", "ConnectionFailed"),
        ("ConfigError", "discover", "ConfigError"),
        ("SchemaMismatch", "plan", "SchemaMismatch"),
        ("RuntimeError", "check", "PluginFailed"),
    ],
)
def test_exceptions_become_error_lines_of_their_kind(served, kind: str, stage: str, expected: str) -> None:
    s = served(f"{FIXTURES}:Raises")
    s.configure("reader", {"kind": kind, "stage": stage})
    body = {"dataset": dataset_to_json(Dataset("j", SCHEMA)), "state": None} if stage == "plan" else {}
    info = s.error(stage, body)
    assert info["kind"] == expected
    if kind == "RuntimeError":
        assert info["message"] == "check() raised RuntimeError: plain failure" and info["hint"] is None
    else:
        assert info["hint"]


def test_a_failure_in_the_middle_of_a_stream_reaches_the_client(served) -> None:
    s = served("tests.fixtures.plugins:RaisingMidStream")
    s.configure("reader", {"rows": 4})
    reader = s.client.do_get(fl.Ticket(json.dumps({"split": split_to_json(Split("j"))}).encode()))
    with pytest.raises(fl.FlightError) as caught:
        reader.read_all()
    info = parse_error(str(caught.value))
    assert info == {
        "kind": "PluginFailed",
        "message": "read() raised RuntimeError: connection reset mid-stream",
        "hint": None,
    }


def test_a_batch_of_another_schema_is_a_schema_mismatch(served) -> None:
    s = served("tests.fixtures.plugins:WrongSchema")
    s.configure("reader")
    reader = s.client.do_get(fl.Ticket(json.dumps({"split": split_to_json(Split("j"))}).encode()))
    with pytest.raises(fl.FlightError) as caught:
        reader.read_all()
    info = parse_error(str(caught.value))
    assert info is not None and info["kind"] == "SchemaMismatch"
    assert "column 'id' should be int64 but is string" in info["message"]


def _put(s: Served, split: Split, batches: list[pa.RecordBatch], *, abort: bool = False) -> Any:
    writer, results = s.client.do_put(
        fl.FlightDescriptor.for_command(json.dumps({"split": split_to_json(split)})), SCHEMA
    )
    for batch in batches:
        writer.write_batch(batch)
    if abort:
        writer.write_metadata(b'{"abort": true}')
    writer.done_writing()
    buffer = results.read()
    writer.close()
    return json.loads(buffer.to_pybytes())


def test_write_then_commit(served, tmp_path: Path) -> None:
    s = served("parquet", args=("--role", "writer"))
    s.configure("writer", settings={"path": str(tmp_path / "out")})
    dataset = dataset_to_json(Dataset("j", SCHEMA))
    s.action("prepare", {"dataset": dataset, "schema": schema_to_b64(SCHEMA), "mode": "append"})
    batch = pa.record_batch([pa.array([1, 2], pa.int64()), pa.array(["a", "b"])], schema=SCHEMA)
    written = _put(s, Split("j", "0"), [batch, batch])
    assert written["rows"] == 4 and written["split"] == "0" and len(written["files"]) == 1
    assert not list((tmp_path / "out").glob("0*"))  # written, not published
    info = s.action(
        "commit", {"dataset": dataset, "files": [written], "state": {"cursor": None}, "run_id": "r1"}
    )
    assert info["rows"] == 4 and info["no_op"] is False and info["commit_id"]
    again = s.action("commit", {"dataset": dataset, "files": [written], "state": None, "run_id": "r1"})
    assert again["no_op"] is True


def test_an_abandoned_write_is_refused(served, tmp_path: Path) -> None:
    s = served("parquet", args=("--role", "writer"))
    s.configure("writer", settings={"path": str(tmp_path / "out")})
    s.action(
        "prepare",
        {"dataset": dataset_to_json(Dataset("j", SCHEMA)), "schema": schema_to_b64(SCHEMA), "mode": "append"},
    )
    batch = pa.record_batch([pa.array([1], pa.int64()), pa.array(["a"])], schema=SCHEMA)
    with pytest.raises(fl.FlightError) as caught:
        _put(s, Split("j", "0"), [batch], abort=True)
    info = parse_error(str(caught.value))
    assert info is not None and "abandoned split '0'" in info["message"]


def test_shutdown_exits(served) -> None:
    s = served(f"{FIXTURES}:Numbers")
    assert s.action("shutdown") == {}
    assert s.process.wait(10) == 0


def test_exits_when_the_host_closes_stdin(served, tmp_path: Path) -> None:
    s = served(f"{FIXTURES}:Numbers", socket=tmp_path / "p.sock")  # started "by a host": watches stdin
    s.process.stdin.close()  # type: ignore[union-attr]
    assert s.process.wait(10) == 0


def test_an_unknown_target_prints_no_handshake(tmp_path: Path) -> None:
    result = subprocess.run(
        [*serve_command("no.such.module:Reader")],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 3 and result.stdout == b""
    assert "cannot import module 'no.such.module'" in result.stderr.decode()


def test_prints_at_import_go_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "noisy.py").write_text(
        "import sys\nprint('hello from import')\nfrom tests.plugins.fixtures_flight import Numbers as Reader\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    process = subprocess.Popen(
        [*serve_command("noisy:Reader")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert json.loads(process.stdout.readline())["dativo_flight"] == 1  # type: ignore[union-attr]
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=10)
    assert b"hello from import" in stderr


def test_python_m_dativo_is_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "dativo", "--version"], capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith(b"dativo ")
