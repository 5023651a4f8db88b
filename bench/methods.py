"""What the benchmark compares: each method is a command line over the same table.

A Dativo method is a real job file run by the real ``dativo`` command in a fresh work directory (so the
embedded Iceberg catalog and warehouse start empty every time). Read-only variants swap the writer for
``bench.null_writer:NullWriter``, which pulls every batch and keeps nothing.

Every method but the COPY limit says how many rows it moved (a Dativo job's ``--json`` run report, the peers'
last line); :func:`rows_problem` compares that with the table's row count, and a run that moved another number
counts as failed.
"""

from __future__ import annotations

import importlib.util
import os
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / "bench" / ".venv-peers" / "bin" / "python"


@dataclass
class Setup:
    """What every command needs: the server, the table and a scratch directory for this run."""

    dsn: str
    psql: str
    table: str
    work: Path


@dataclass
class Method:
    """One way to move the table.

    Attributes:
        name: Short label, unique.
        group: ``limit``, ``dativo``, ``dativo-read`` or ``peer``.
        command: Builds the command line for one run.
        available: Why the method cannot run here (``None``: it can).
        rows_moved: The rows a run moved, from what it printed on stdout (``None``: it does not say, and its
            stdout is not kept: the COPY limit's is the data itself).
        shape: The table it moves (``bench.table.SHAPES``, or ``empty``): ``wide`` is the reference table.
    """

    name: str
    group: str
    command: Callable[[Setup], list[str]]
    available: Callable[[], str | None] = field(default=lambda: None)
    rows_moved: Callable[[str], int] | None = None
    shape: str = "wide"


def rows_in_report(stdout: str) -> int:
    """The rows a ``dativo run --json`` moved: written, and only if every row read was written.

    Raises:
        ValueError: The output is not a run report, or the run read rows it did not write.
    """
    try:
        report = json.loads(stdout)
        read, written = int(report["rows_read"]), int(report["rows_written"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"no run report on stdout ({exc}): {stdout.strip()[-200:]!r}") from None
    if read != written:
        raise ValueError(f"read {read:,} rows but wrote {written:,}")
    return written


def rows_printed(stdout: str) -> int:
    """The row count a peer script prints as its last line.

    Raises:
        ValueError: Its last line is not a number.
    """
    lines = stdout.strip().splitlines()
    try:
        return int(lines[-1])
    except (IndexError, ValueError):
        raise ValueError(f"no row count as the last line of stdout: {stdout.strip()[-200:]!r}") from None


def rows_problem(method: Method, stdout: str, expected: int) -> str | None:
    """Why a successful run of ``method`` does not count: it moved other than ``expected`` rows (``None``: it
    moved exactly those, or the method cannot say)."""
    if method.rows_moved is None:
        return None
    try:
        moved = method.rows_moved(stdout)
    except ValueError as exc:
        return f"cannot tell how many rows it moved: {exc}"
    if moved != expected:
        return f"moved {moved:,} rows, but the table has {expected:,}"
    return None


def _reader_block(reader: str, boundary: str) -> dict[str, Any] | None:
    """The job's ``reader:`` for ``reader`` run in process, over Flight, or over Flight in the sandbox."""
    if boundary == "flight":  # the same Python code, served by `dativo plugin serve` in its own process
        serve = [sys.executable, "-m", "dativo", "plugin", "serve", "--role", "reader", reader]
        return {"type": "custom", "implementation": {"command": serve}, "fallback": "fail"}
    if boundary == "sandbox":  # served inside bubblewrap; the bench server is on loopback TCP
        return {"type": "custom", "implementation": reader, "fallback": "fail",
                "sandbox": {"enabled": True, "network": True, "memory_mb": 8192}}
    if reader != "postgres":
        return {"type": "custom", "implementation": reader, "fallback": "fail"}
    return None


RAY_ADDRESS_ENV = "DATIVO_BENCH_RAY_ADDRESS"
"""Set by ``--executor ray``: the local cluster the ``…, ray`` methods run on."""


def _dativo_job(setup: Setup, reader: str, parallelism: int, read_only: bool, boundary: str = "",
                ray: bool = False) -> list[str]:
    source: dict[str, Any] = {
        "type": "postgres",
        "connection": {"dsn": setup.dsn},
        "tables": [setup.table],
        "parallelism": parallelism,
    }
    block = _reader_block(reader, boundary)
    if block is not None:
        source["reader"] = block
    target: dict[str, Any] = {"type": "iceberg", "namespace": "bench", "mode": "overwrite"}
    if read_only:
        target = {
            "type": "parquet",
            "path": str(setup.work / "unused"),
            "writer": {"type": "custom", "implementation": "bench.null_writer:NullWriter", "fallback": "fail"},
        }
    job = {"version": 1, "name": "bench", "source": source, "target": target}
    if ray:  # one machine: its work folder is "shared" by every node, so the embedded catalog may stay
        target["catalog"] = {"type": "sql", "uri": f"sqlite:///{setup.work / 'catalog.db'}",
                             "warehouse": str(setup.work / "warehouse")}
        job["executor"] = {"type": "ray", "address": os.environ[RAY_ADDRESS_ENV],
                           "shared_paths": [str(setup.work)]}
    path = setup.work / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return [str(Path(sys.executable).with_name("dativo")), "run", str(path), "--quiet", "--json"]


def _installed(entry_point: str) -> Callable[[], str | None]:
    def check() -> str | None:
        from importlib.metadata import entry_points

        names = {ep.name for ep in entry_points(group="dativo.readers")}
        return None if entry_point in names else f"{entry_point} is not installed (make plugins)"

    return check


def _peers() -> str | None:
    return None if PEERS_PYTHON.exists() else "peers are not installed (make bench installs them)"


def _module(name: str) -> Callable[[], str | None]:
    return lambda: None if importlib.util.find_spec(name) else f"{name} is not installed"


def dativo(name: str, reader: str, parallelism: int, *, read_only: bool = False, boundary: str = "",
           ray: bool = False, shape: str = "wide") -> Method:
    """A Dativo job with ``reader`` at ``parallelism`` into Iceberg (or into nothing), over the ``shape`` table.

    ``boundary``: ``""`` in process, ``flight`` served out of process, ``sandbox`` served in bubblewrap.
    """
    available = _installed(reader) if reader not in ("postgres", "postgres-python") else (lambda: None)
    if boundary == "sandbox":
        available = _sandbox
    return Method(
        name=name,
        group="dativo-read" if read_only else "dativo",
        command=lambda s: _dativo_job(s, reader, parallelism, read_only, boundary, ray),
        available=(lambda: None if os.environ.get(RAY_ADDRESS_ENV) else "needs --executor ray") if ray else available,
        rows_moved=rows_in_report,
        shape=shape,
    )


def _sandbox() -> str | None:
    return None if shutil.which("bwrap") else "bubblewrap is not installed"


def copy_limit(shape: str = "wide") -> Method:
    """``psql`` copying the ``shape`` table in binary format to /dev/null: the physical limit."""
    return Method(
        "copy-limit" if shape == "wide" else f"copy-limit, {shape}",
        "limit",
        lambda s: [s.psql, s.dsn, "-q", "-c", f"COPY {s.table} TO STDOUT (FORMAT binary)"],
        shape=shape,
    )


def second_tables() -> list[Method]:
    """The same readers over tables of other shapes, so that tuning for the reference table shows."""
    methods = []
    for shape in ("narrow", "text"):
        methods += [
            copy_limit(shape),
            dativo(f"postgres-python → iceberg, {shape}", "postgres-python", 1, shape=shape),
            dativo(f"postgres p1 → iceberg, {shape}", "postgres", 1, shape=shape),
            dativo(f"rust_postgres p1 → iceberg, {shape}", "rust_postgres", 1, shape=shape),
        ]
    return methods


def all_methods() -> list[Method]:
    """Every method, in report order."""
    peers = ROOT / "bench" / "peers"
    return [
        copy_limit(),
        dativo("empty table → iceberg (fixed cost)", "postgres", 1, shape="empty"),
        dativo("postgres-python → iceberg", "postgres-python", 1),
        dativo("postgres p1 → iceberg", "postgres", 1),
        dativo("postgres p2 → iceberg", "postgres", 2),
        dativo("postgres p2 → iceberg, ray", "postgres", 2, ray=True),
        dativo("rust_postgres p1 → iceberg", "rust_postgres", 1),
        dativo("rust_postgres p2 → iceberg", "rust_postgres", 2),
        dativo("postgres p1 → iceberg, flight", "postgres", 1, boundary="flight"),
        dativo("postgres p1 → iceberg, sandboxed", "postgres", 1, boundary="sandbox"),
        dativo("go_postgres p1 → iceberg", "go_postgres", 1),
        dativo("go_postgres p2 → iceberg", "go_postgres", 2),
        dativo("postgres-python → null", "postgres-python", 1, read_only=True),
        dativo("postgres p2 → null", "postgres", 2, read_only=True),
        dativo("rust_postgres p1 → null", "rust_postgres", 1, read_only=True),
        dativo("rust_postgres p2 → null", "rust_postgres", 2, read_only=True),
        Method(
            "dlt pyarrow → parquet",
            "peer",
            lambda s: [str(PEERS_PYTHON), str(peers / "dlt_load.py"), s.dsn, *s.table.split("."), "pyarrow",
                       str(s.work)],
            _peers,
            rows_printed,
        ),
        Method(
            "dlt connectorx → parquet",
            "peer",
            lambda s: [str(PEERS_PYTHON), str(peers / "dlt_load.py"), s.dsn, *s.table.split("."), "connectorx",
                       str(s.work)],
            _peers,
            rows_printed,
        ),
        Method(
            "connectorx p2 → arrow",
            "peer",
            lambda s: [str(PEERS_PYTHON), str(peers / "cx_read.py"), s.dsn, s.table, "2"],
            _peers,
            rows_printed,
        ),
        *second_tables(),
    ]
