"""Fixtures of the pipeline tests: run a job through the real CLI, read the Iceberg table back like a user.

``run_job(job)`` writes the job dict as YAML into the test's work directory (the current directory, so the
embedded catalog lands in ``./.dativo``) and runs ``dativo run JOB --json`` in-process. The table is read
back with pyiceberg on its own catalog connection (``Lake``), never through Dativo's writer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import yaml
from psycopg.conninfo import make_conninfo
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError
from pyiceberg.table import Table

from tests.conftest import Result
from tests.fixtures.s3 import S3Server

CATALOG_NAME = "dativo"  # the name Dativo's SQL catalog keys its rows by


@dataclass
class Outcome:
    """One ``dativo run --json``: exit code, both streams and the parsed report (also on failure)."""

    exit_code: int
    stdout: str
    stderr: str
    report: dict[str, Any]

    @property
    def output(self) -> str:
        """Everything a user sees."""
        return self.stdout + self.stderr

    def ok(self) -> Outcome:
        """Assert success (showing the output otherwise) and return self."""
        assert self.exit_code == 0, self.output
        assert self.report["status"] == "succeeded", self.report
        return self


@dataclass
class Lake:
    """An Iceberg catalog as any other client sees it.

    Attributes:
        uri: SQLAlchemy URI of the SQL catalog.
        warehouse: Where tables live.
        properties: FileIO properties (S3 endpoint and credentials).
        job_catalog: The ``target.catalog`` block of a job writing here (``None``: the embedded default).
        env: Environment variables the job's ``${VAR}`` references need.
    """

    uri: str
    warehouse: str
    properties: dict[str, str] = field(default_factory=dict)
    job_catalog: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def catalog(self) -> SqlCatalog:
        """A fresh catalog connection."""
        return SqlCatalog(CATALOG_NAME, uri=self.uri, warehouse=self.warehouse, **self.properties)

    def table(self, table: str, namespace: str = "raw") -> Table:
        """The table, freshly loaded."""
        return self.catalog().load_table((namespace, table))

    def exists(self, table: str, namespace: str = "raw") -> bool:
        """Whether the table exists."""
        try:
            self.table(table, namespace)
        except (NoSuchTableError, NoSuchNamespaceError):
            return False
        return True

    def read(self, table: str, namespace: str = "raw", sort_by: str | None = "id") -> pa.Table:
        """A full scan, sorted by ``sort_by``."""
        result = self.table(table, namespace).scan().to_arrow()
        return result.sort_by(sort_by) if sort_by and result.num_rows else result

    def snapshot_id(self, table: str, namespace: str = "raw") -> int | None:
        """The current snapshot id, or ``None`` for a table without one."""
        snapshot = self.table(table, namespace).current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def target(self, table: str, mode: str = "append", namespace: str = "raw", **extra: Any) -> dict[str, Any]:
        """The ``target`` section of a job writing ``table`` here."""
        target: dict[str, Any] = {"type": "iceberg", "namespace": namespace, "table": table, "mode": mode}
        if self.job_catalog is not None:
            target["catalog"] = self.job_catalog
        return {**target, **extra}


@pytest.fixture
def local_lake(workdir: Path) -> Lake:
    """The embedded default catalog of a job run in ``workdir`` (``./.dativo``)."""
    base = workdir / ".dativo"
    return Lake(uri=f"sqlite:///{base / 'catalog.db'}", warehouse=(base / "warehouse").as_uri())


S3_ENV = {"S3_ENDPOINT": "endpoint", "S3_KEY_ID": "access_key_id", "S3_SECRET": "secret_access_key"}


@pytest.fixture
def s3_lake(workdir: Path, s3_server: S3Server, s3_bucket: str) -> Lake:
    """A SQL catalog whose warehouse is ``s3://<fresh bucket>/wh``; credentials reach the job via ``${ENV}``."""
    uri = f"sqlite:///{workdir / 's3catalog' / 'catalog.db'}"
    warehouse = f"s3://{s3_bucket}/wh"
    settings = s3_server.settings()
    env = {var: str(settings[key]) for var, key in S3_ENV.items()}
    job_s3 = {**settings, **{key: f"${{{var}}}" for var, key in S3_ENV.items()}}
    properties = {
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        "s3.endpoint": s3_server.endpoint,
        "s3.access-key-id": s3_server.access_key,
        "s3.secret-access-key": s3_server.secret_key,
        "s3.region": s3_server.region,
    }
    return Lake(
        uri=uri,
        warehouse=warehouse,
        properties=properties,
        job_catalog={"type": "sql", "uri": uri, "warehouse": warehouse, "s3": job_s3},
        env=env,
    )


RunJob = Callable[..., Outcome]


@pytest.fixture
def run_job(workdir: Path, cli: Callable[..., Result]) -> RunJob:
    """``run_job(job, *cli_args, env=None, file="job.yaml")``: write the job and run it with ``--json``."""

    def run(job: dict[str, Any], *args: str, env: dict[str, str] | None = None, file: str = "job.yaml") -> Outcome:
        path = workdir / file
        path.write_text(yaml.safe_dump(job, sort_keys=False, allow_unicode=True), encoding="utf-8")
        result = cli("run", str(path), "--json", *args, env=env)
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"dativo run --json printed no JSON report (exit {result.exit_code}):\n{result.output}")
        return Outcome(result.exit_code, result.stdout, result.stderr, report)

    return run


def postgres_job(
    target: dict[str, Any],
    *,
    tables: list[str] | None = None,
    reader: str = "postgres",
    dsn: str = "${PG_DSN}",
    name: str = "pg_to_lake",
    **source: Any,
) -> dict[str, Any]:
    """A job reading PostgreSQL with the built-in reader ``reader`` (``postgres`` or ``postgres-python``)."""
    section: dict[str, Any] = {"type": "postgres", "connection": {"dsn": dsn}}
    if tables is not None:
        section["tables"] = tables
    if reader != "postgres":
        section["reader"] = {"type": "custom", "implementation": reader, "fallback": "fail"}
    section.update(source)
    return {"version": 1, "name": name, "source": section, "target": target}


@dataclass(frozen=True)
class Database:
    """A fresh database on the session's server, dropped after the test."""

    name: str
    dsn: str

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement (or, without params, a whole script) in autocommit mode; return its rows."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture
def database(pg_dsn: str) -> Iterator[Database]:
    """A fresh, empty database (for jobs that name ``public.`` tables)."""
    name = f"db_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(name, make_conninfo(pg_dsn, dbname=name))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
