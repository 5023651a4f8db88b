"""Opening a new SQLAlchemy catalog (``SqlCatalog``) at the first moment, when other jobs open it too.

The embedded catalog (:mod:`dativo.writers.iceberg.sqlite`) creates its tables ``IF NOT EXISTS`` and has no
such race; a SQLite URI with an explicit driver (``sqlite+pysqlite:``) is the way to get ``SqlCatalog``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog, SqlCatalogBaseTable

from dativo.errors import ConnectionFailed
from dativo.writers.iceberg.catalog import CatalogConfig, open_catalog


def _sqlalchemy(tmp_path: Path) -> CatalogConfig:
    return CatalogConfig(uri=f"sqlite+pysqlite:///{tmp_path / 'catalog.db'}", warehouse=str(tmp_path / "warehouse"))


def _lose_the_first_race(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """Make ``times`` table creations lose to a job that created the tables between check and create.

    The loser then runs its ``CREATE TABLE`` against tables that exist, and SQLite answers as it does in
    the real race: an operational error "table iceberg_tables already exists".
    """
    seen: list[str] = []

    def create_tables(self: SqlCatalog) -> None:
        if len(seen) < times:
            SqlCatalogBaseTable.metadata.create_all(self.engine)  # the other job's creation wins
            try:
                SqlCatalogBaseTable.metadata.create_all(self.engine, checkfirst=False)
            except Exception as exc:
                seen.append(str(exc).splitlines()[0])
                raise
        SqlCatalogBaseTable.metadata.create_all(self.engine)

    def init_catalog(self: SqlCatalog) -> None:  # the "tables absent" path, as for a job that checked early
        self.create_tables()
        self._schema_version = "v1"

    monkeypatch.setattr(SqlCatalog, "create_tables", create_tables)
    monkeypatch.setattr(SqlCatalog, "_init_catalog", init_catalog)
    return seen


def test_a_job_that_lost_the_race_to_create_a_new_catalog_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _lose_the_first_race(monkeypatch, times=1)
    handle = open_catalog(_sqlalchemy(tmp_path), str(tmp_path))
    assert isinstance(handle.catalog, SqlCatalog)
    assert seen and "already exists" in seen[0]  # the race ran and SQLite reported it
    handle.catalog.create_namespace("after")
    assert ("after",) in handle.catalog.list_namespaces()


def test_a_catalog_that_keeps_failing_to_open_is_a_connection_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _lose_the_first_race(monkeypatch, times=99)
    with pytest.raises(ConnectionFailed, match="cannot open the catalog.*already exists"):
        open_catalog(_sqlalchemy(tmp_path), str(tmp_path))
    assert len(seen) == 3  # every attempt ran, none hung
