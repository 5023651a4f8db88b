"""Out-of-process test plugins: Python classes served by ``dativo plugin serve``, and broken raw plugins.

Run as a script (``python fixtures_flight.py MODE``) it is a raw plugin that gets the start wrong in the way
``MODE`` says. The classes are served with ``python -m dativo plugin serve tests.plugins.fixtures_flight:Class``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from dativo.api import (
    CommitFailed,
    CommitStateUnknown,
    ConfigError,
    ConnectionFailed,
    Dataset,
    Reader,
    SchemaMismatch,
    Split,
    State,
    WrittenFiles,
)
from dativo.plugins.process import executable
from dativo.writers.parquet import ParquetWriter, ParquetWriterConfig

ROOT = Path(__file__).resolve().parents[2]
"""The repository: ``PYTHONPATH`` for served test plugins (``tests.…`` is not installed)."""
SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def serve_command(*targets: str) -> list[str]:
    """The command that serves ``targets`` out of process."""
    return [sys.executable, "-m", "dativo", "plugin", "serve", *targets]


class Rows(BaseModel):
    rows: int = 6
    batch_size: int = 2


class Numbers(Reader):
    """Rows ``1..rows`` in batches; the base of the misbehaving readers below."""

    Config = Rows
    schema = SCHEMA
    version = "2.0.1"

    def batches(self) -> Iterator[pa.RecordBatch]:
        for start in range(1, self.config.rows + 1, self.config.batch_size):
            ids = list(range(start, min(start + self.config.batch_size, self.config.rows + 1)))
            yield pa.record_batch(
                [pa.array(ids, pa.int64()), pa.array([f"n{i}" for i in ids])], schema=SCHEMA
            )

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        yield from self.batches()


class CrashMidStream(Numbers):
    """The process dies (``os._exit(7)``) after the second batch of a ``DoGet``."""

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(self.batches()):
            if i == 2:
                print("about to crash: token=hunter2-very-secret", file=sys.stderr, flush=True)
                os._exit(7)
            yield batch


class PanicMidStream(Numbers):
    """After the first batch: 200 lines of noise on stderr, then a Go runtime panic, then exit status 2."""

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        batches = self.batches()
        yield next(batches)
        for i in range(200):
            print(f"INFO decoding record {i}", file=sys.stderr)
        print(PANIC, file=sys.stderr, flush=True)
        os._exit(2)


PANIC = "\n".join([
    "panic: runtime error: index out of range [3] with length 3",
    "",
    "goroutine 23 [running]:",
    "main.(*ordersDecoder).field(...)",
    "\t/src/plugin/decode.go:87",
    "main.(*ordersDecoder).next(0xc000120000, {0xc0001b6000, 0x3, 0x3})",
    "\t/src/plugin/decode.go:142 +0x2a5",
    *[f"github.com/dativo/sdk.frame{i}(...)\n\t/src/sdk/stream.go:{i} +0x1d" for i in range(12)],
    "created by github.com/dativo/sdk.(*Server).DoGet token=hunter2-very-secret \x1b]0;pwned\x07",
    "\t/src/sdk/serve.go:301 " + "+0x" * 400,
])
"""A Go panic's report (33 lines) as a crashing Go plugin prints it; the frame that matters: decode.go:142."""


class HangInRead(Numbers):
    """Sends one batch, then sleeps forever."""

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        batches = self.batches()
        yield next(batches)
        time.sleep(3600)
        yield from batches


class HangInCheck(Numbers):
    """``check`` never returns."""

    def check(self) -> None:
        time.sleep(3600)


class Flood(Numbers):
    """Writes ``flood_mb`` MB to stderr in ``read``, then reads normally."""

    class Config(Rows):
        flood_mb: int = 20

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        line = ("x" * 1023 + "\n").encode()
        for _ in range(self.config.flood_mb * 1024):
            sys.stderr.buffer.write(line)
        sys.stderr.buffer.write(b"a line longer than any limit: " + b"y" * 100_000 + b"\n")
        sys.stderr.flush()
        yield from self.batches()


class Raises(Numbers):
    """Raises the error ``kind`` in ``stage`` (``check``, ``discover``, ``plan`` or ``read``)."""

    class Config(Rows):
        kind: str
        stage: str = "read"

    def _raise(self, stage: str) -> None:
        if stage != self.config.stage:
            return
        errors = {
            "ConfigError": ConfigError("option 'table' names no table", hint="Name an existing table."),
            "ConnectionFailed": ConnectionFailed("the orders API refused the token", hint="Renew the token."),
            "SchemaMismatch": SchemaMismatch("column 'id' changed type", hint="Recreate the view."),
            "CommitFailed": CommitFailed("cannot commit from a reader"),
            "RuntimeError": RuntimeError("plain failure"),
        }
        raise errors[self.config.kind]

    def check(self) -> None:
        self._raise("check")

    def discover(self) -> list[Dataset]:
        self._raise("discover")
        return super().discover()

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        self._raise("plan")
        return super().plan(dataset, state)

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        self._raise("read")
        yield from self.batches()


class Environment(Reader):
    """One row per environment variable the plugin process sees."""

    schema = pa.schema([("name", pa.string()), ("value", pa.string())])

    def read(self, split: Split) -> pa.Table:
        names = sorted(os.environ)
        return pa.table({"name": names, "value": [os.environ[n] for n in names]}, schema=self.schema)


class LogsSecret(Numbers):
    """Logs its ``token`` option and prints it on stderr, as careless plugins do."""

    class Config(Rows):
        token: str

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        logging.getLogger("careless").warning("connecting with token %s", self.config.token)
        print(f"debug: token={self.config.token}", file=sys.stderr, flush=True)
        yield from self.batches()


class StagingParquet(ParquetWriter):
    """The built-in parquet writer; ``commit_error`` makes every commit fail with that kind."""

    class Config(ParquetWriterConfig):
        commit_error: str | None = None

    def commit(self, dataset: Dataset, files: list[WrittenFiles], state: State | None, run_id: str):  # type: ignore[no-untyped-def]
        if self.config.commit_error == "CommitFailed":
            raise CommitFailed("the target refused the commit", hint="Retry the run.")
        if self.config.commit_error == "CommitStateUnknown":
            raise CommitStateUnknown("the commit timed out", hint="Check the target.")
        if self.config.commit_error == "RuntimeError":
            raise RuntimeError("lost the connection while committing")
        return super().commit(dataset, files, state, run_id)


ExecutableNumbers = executable(
    sys.executable,
    "-m",
    "dativo",
    "plugin",
    "serve",
    "tests.plugins.fixtures_flight:Numbers",
    env={"PYTHONPATH": str(ROOT)},
)
"""What a packaged executable's entry point is (``go_postgres = pkg:reader``), here a served Python reader."""


# --- raw plugins that get the start wrong -------------------------------------------------------------------


def _main(mode: str) -> None:
    socket = os.environ.get("DATIVO_FLIGHT_SOCKET", "")
    if os.environ.get("STARTS_FILE"):  # lets a test count how often the host started us
        with open(os.environ["STARTS_FILE"], "a") as starts:
            starts.write(f"{mode}\n")
    if mode == "bad-handshake":
        print("Starting my plugin v1.0 ...", flush=True)
        time.sleep(30)
    elif mode == "silent":
        print("listening soon", file=sys.stderr, flush=True)
        time.sleep(3600)
    elif mode == "protocol-2":
        print(
            json.dumps({"dativo_flight": 2, "location": f"grpc+unix://{socket}", "name": "future"}),
            flush=True,
        )
        time.sleep(30)
    elif mode == "exit":
        print("fatal: cannot open config file /etc/plugin.conf (token=hunter2-very-secret)", file=sys.stderr)
        sys.exit(4)
    elif mode == "no-location":
        print(json.dumps({"dativo_flight": 1, "name": "lost"}), flush=True)
        time.sleep(30)
    elif mode == "api-7":  # a plugin written from scratch, as in another language, for a future Dativo API
        import pyarrow.flight as fl

        class Future(fl.FlightServerBase):
            def do_action(self, context, action):  # type: ignore[no-untyped-def]
                answers = {
                    "health": {"ok": True},
                    "spec": {
                        "name": "future",
                        "version": "9.0.0",
                        "language": "go",
                        "roles": ["reader"],
                        "api_version": ">=7,<8",
                    },
                }
                return [json.dumps(answers.get(action.type, {})).encode()]

        server = Future(f"grpc+unix://{socket}")
        print(json.dumps({"dativo_flight": 1, "location": f"grpc+unix://{socket}"}), flush=True)
        sys.stdin.read()  # until the host goes
        server.shutdown()
    elif mode == "unreachable":  # a handshake naming a socket nobody listens on
        print(json.dumps({"dativo_flight": 1, "location": f"grpc+unix://{socket}"}), flush=True)
        time.sleep(30)
    elif mode == "deaf":  # listens (speaks no Flight) and never reads its stdin: only a signal ends it soon
        from socket import AF_UNIX
        from socket import socket as unix_socket

        listener = unix_socket(AF_UNIX)
        listener.bind(socket)
        listener.listen()
        print(json.dumps({"dativo_flight": 1, "location": f"grpc+unix://{socket}"}), flush=True)
        time.sleep(30)
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    _main(sys.argv[1])


# --- helpers for the tests ----------------------------------------------------------------------------------


def plugin_children() -> list[object]:
    """Plugin processes still running under this test process (there must be none after a job)."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if ("plugin" in line and "serve" in line) or "fixtures_flight" in line or "liar.py" in line:
            found.append(child)
    return found


def served(target: str, *args: str, **settings: object) -> dict[str, object]:
    """``implementation:`` that serves ``target`` out of process (``settings``: start_timeout_s, env …)."""
    env = {"PYTHONPATH": str(ROOT), **dict(settings.pop("env", {}))}  # type: ignore[call-overload]
    return {"command": [*serve_command(target), *args], "env": env, **settings}


def raw(mode: str, **settings: object) -> dict[str, object]:
    """``implementation:`` of a raw plugin that gets the start wrong as ``mode`` says."""
    return {
        "command": [sys.executable, str(Path(__file__)), mode],
        "env": {"PYTHONPATH": str(ROOT)},
        **settings,
    }
