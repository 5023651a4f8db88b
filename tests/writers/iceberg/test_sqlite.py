"""The embedded catalog keeps pyiceberg's ``SqlCatalog`` rows without SQLAlchemy, and commits as safely.

Every check is made by pyiceberg's own ``SqlCatalog`` on the same file: it is the reference for the rows
(and other engines' JDBC catalogs read the same tables).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)

from dativo.errors import ConnectionFailed
from dativo.writers.iceberg.catalog import CatalogConfig, ensure_namespace, open_catalog
from dativo.writers.iceberg.sqlite import SqliteCatalog, sqlite_file

ROWS = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": pa.array(["a", "b", None], pa.string())})


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


def _ours(tmp_path: Path, **properties: str) -> SqliteCatalog:
    return SqliteCatalog("dativo", uri=_uri(tmp_path), warehouse=(tmp_path / "warehouse").as_uri(), **properties)


def _reference(tmp_path: Path, **properties: str) -> SqlCatalog:
    return SqlCatalog("dativo", uri=_uri(tmp_path), warehouse=(tmp_path / "warehouse").as_uri(), **properties)


def _dump(path: Path) -> list[tuple[object, ...]]:
    """Every table definition and row of a catalog file, in a stable order."""
    with sqlite3.connect(path) as db:
        ddl = sorted(db.execute("SELECT type, name, sql FROM sqlite_master"), key=str)
        tables = sorted(db.execute("SELECT * FROM iceberg_tables"), key=str)
        properties = sorted(db.execute("SELECT * FROM iceberg_namespace_properties"), key=str)
    return [*ddl, *tables, *properties]


@pytest.mark.parametrize(
    ("uri", "file"),
    [
        ("sqlite:////abs/catalog.db", "/abs/catalog.db"),
        ("sqlite:///relative/catalog.db", "relative/catalog.db"),
        ("sqlite:///:memory:", None),
        ("sqlite+pysqlite:////abs/catalog.db", None),
        ("sqlite:////abs/catalog.db?timeout=5", None),
        ("postgresql+psycopg://u@h/db", None),
    ],
)
def test_only_a_plain_sqlite_file_uri_is_kept_by_the_embedded_catalog(uri: str, file: str | None) -> None:
    assert sqlite_file(uri) == (Path(file) if file else None)


def test_the_tables_and_rows_are_those_sqlcatalog_writes(tmp_path: Path) -> None:
    def build(catalog: SqliteCatalog | SqlCatalog) -> None:
        catalog.create_namespace("raw")
        catalog.create_namespace(("deep", "er"), {"owner": "bank"})
        catalog.create_table("raw.orders", ROWS.schema).append(ROWS)

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir(), theirs.mkdir()
    build(_ours(ours))
    build(_reference(theirs))
    normalise = lambda rows, root: [str(r).replace(str(root), "ROOT") for r in rows]  # noqa: E731
    dumped = normalise(_dump(ours / "catalog.db"), ours)
    expected = normalise(_dump(theirs / "catalog.db"), theirs)
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert [re.sub(uuid, "UUID", r) for r in dumped] == [re.sub(uuid, "UUID", r) for r in expected]


def test_sqlcatalog_reads_and_commits_to_what_the_embedded_catalog_wrote(tmp_path: Path) -> None:
    ours = _ours(tmp_path)
    ours.create_namespace("raw")
    ours.create_table("raw.orders", ROWS.schema).append(ROWS)
    reference = _reference(tmp_path)
    assert reference.load_table("raw.orders").scan().to_arrow().sort_by("id").equals(ROWS)
    reference.load_table("raw.orders").append(ROWS)  # and the other way: ours sees the reference's commit
    assert ours.load_table("raw.orders").scan().to_arrow().num_rows == 6
    assert len(ours.load_table("raw.orders").history()) == 2


def test_a_commit_that_lost_the_swap_fails_and_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog, other = _ours(tmp_path), _ours(tmp_path)
    catalog.create_namespace("raw")
    catalog.create_table("raw.orders", ROWS.schema)
    stage = catalog._update_and_stage_table
    raced: list[str] = []

    def another_job_commits_first(*args: object) -> object:
        staged = stage(*args)  # type: ignore[arg-type]
        if not raced:  # between this commit's read of the table and its swap of the row
            raced.append(other.load_table("raw.orders").append(ROWS) or "appended")
        return staged

    monkeypatch.setattr(catalog, "_update_and_stage_table", another_job_commits_first)
    with pytest.raises(CommitFailedException, match="updated by another process"):
        catalog.load_table("raw.orders").transaction().set_properties(owner="late").commit_transaction()
    assert raced == ["appended"]
    current = _reference(tmp_path).load_table("raw.orders")
    assert "owner" not in current.properties
    assert current.scan().to_arrow().num_rows == 3  # the other job's commit, and only it


def test_jobs_opening_and_creating_the_same_new_table_at_once_each_see_one_table(tmp_path: Path) -> None:
    jobs, start = 8, threading.Barrier(8)
    outcomes: list[str] = []

    def job() -> None:
        start.wait()
        catalog = _ours(tmp_path)
        ensure_namespace(catalog, ("raw",))
        try:
            catalog.create_table("raw.orders", ROWS.schema)
            outcomes.append("created")
        except TableAlreadyExistsError:
            outcomes.append("exists")
        try:  # retried by nobody: each append publishes, or fails as a lost commit, never anything else
            catalog.load_table("raw.orders").append(ROWS)
            outcomes.append("appended")
        except CommitFailedException:
            outcomes.append("conflict")

    threads = [threading.Thread(target=job) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("created") == 1
    assert outcomes.count("exists") == jobs - 1
    committed = outcomes.count("appended")
    assert committed >= 1 and committed + outcomes.count("conflict") == jobs
    assert _reference(tmp_path).load_table("raw.orders").scan().to_arrow().num_rows == 3 * committed


def test_namespaces_and_tables_are_listed_renamed_and_dropped_as_sqlcatalog_does(tmp_path: Path) -> None:
    catalog = _ours(tmp_path)
    catalog.create_namespace("a")
    catalog.create_namespace("a.b")
    catalog.create_namespace("a_c")
    with pytest.raises(NamespaceAlreadyExistsError):
        catalog.create_namespace("a")
    catalog.create_table("a.t", ROWS.schema)
    assert sorted(catalog.list_namespaces()) == [("a",), ("a_c",)]
    assert catalog.list_namespaces("a") == [("a", "b")]
    assert catalog.list_tables("a") == [("a", "t")]
    assert not catalog.namespace_exists("ab")  # "_" and "%" in a name are not patterns
    with pytest.raises(NoSuchNamespaceError):
        catalog.list_tables("nope")
    catalog.rename_table("a.t", "a_c.u")
    with pytest.raises(NoSuchTableError):
        catalog.load_table("a.t")
    catalog.create_table("a.t", ROWS.schema)
    with pytest.raises(TableAlreadyExistsError):
        catalog.rename_table("a.t", "a_c.u")
    with pytest.raises(NamespaceNotEmptyError):
        catalog.drop_namespace("a_c")
    catalog.drop_table("a_c.u")
    with pytest.raises(NoSuchTableError):
        catalog.drop_table("a_c.u")
    catalog.drop_namespace("a_c")
    summary = catalog.update_namespace_properties("a", removals={"exists", "gone"}, updates={"owner": "bank"})
    assert (summary.removed, summary.updated, summary.missing) == (["exists"], ["owner"], ["gone"])
    reference = _reference(tmp_path)
    assert reference.load_namespace_properties("a") == {"owner": "bank"}
    assert sorted(reference.list_namespaces()) == [("a",)]
    assert reference.list_tables("a") == [("a", "t")]


def test_a_catalog_without_the_type_column_is_kept_as_it_is(tmp_path: Path) -> None:
    """A v0 file (made before SqlCatalog had ``iceberg_type``) stays v0 unless ``schema_version`` says v1."""
    _reference(tmp_path).create_namespace("raw")
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        db.execute("ALTER TABLE iceberg_tables DROP COLUMN iceberg_type")
    catalog = _ours(tmp_path)
    catalog.create_table("raw.orders", ROWS.schema).append(ROWS)
    assert _reference(tmp_path).load_table("raw.orders").scan().to_arrow().num_rows == 3
    _ours(tmp_path, schema_version="v1")
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        assert db.execute("SELECT iceberg_type FROM iceberg_tables").fetchall() == [(None,)]


def test_a_view_row_written_by_another_engine_is_not_a_table(tmp_path: Path) -> None:
    catalog = _ours(tmp_path)
    catalog.create_namespace("raw")
    with sqlite3.connect(tmp_path / "catalog.db") as db:
        db.execute("INSERT INTO iceberg_tables VALUES ('dativo', 'raw', 'v', 'file:///x.json', NULL, 'VIEW')")
    assert catalog.list_tables("raw") == []
    with pytest.raises(NoSuchTableError):
        catalog.load_table("raw.v")


def test_a_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.db").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        _ours(tmp_path)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_catalog_uri_naming_something_other_than_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A FIFO would block the run at its first read; /dev/null would take every commit and keep none."""
    target = {"fifo": tmp_path / "catalog.fifo", "device": Path("/dev/null"), "directory": tmp_path}[kind]
    if kind == "fifo":
        os.mkfifo(target)
    with pytest.raises(ConnectionFailed, match=rf"{re.escape(str(target))} is not a regular file"):
        open_catalog(CatalogConfig(uri=f"sqlite:///{target}"), str(tmp_path))
    assert not kind == "device" or Path("/dev/null").is_char_device()
