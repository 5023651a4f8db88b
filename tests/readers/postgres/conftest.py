"""Helpers for the PostgreSQL reader tests: build readers as the engine would, and read whole datasets."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dativo.api import Context, Reader
from dativo.readers.postgres import PostgresConfig, PostgresPythonReader, PostgresReader

READERS = [PostgresReader, PostgresPythonReader]

MakeReader = Callable[..., Reader]


@pytest.fixture(params=READERS, ids=["postgres", "postgres-python"])
def reader_cls(request: pytest.FixtureRequest) -> type[Reader]:
    """Each of the two readers in turn."""
    return request.param


@pytest.fixture
def make_reader() -> Iterator[MakeReader]:
    """``make_reader(cls, dsn, parallelism=1, cursor=None, **options)``; every reader is closed afterwards."""
    made: list[Reader] = []

    def make(
        cls: type[Reader], dsn: str, *, parallelism: int = 1, cursor: str | None = None, **options: Any
    ) -> Reader:
        # min_split_bytes: 1 lets tables of a few pages be split as parallelism says
        config = PostgresConfig.model_validate({"connection": {"dsn": dsn}, "min_split_bytes": 1, **options})
        ctx = Context(
            job="t",
            run_id="r",
            plugin=cls.__name__,
            logger=logging.getLogger("t"),
            parallelism=parallelism,
            cursor=cursor,
        )
        reader = cls(config, ctx)
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()
