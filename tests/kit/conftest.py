"""What the kit's tests share: the broken plugins' module, a real Postgres table, and job files naming them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.postgres import PgSchema

BROKEN = "tests.fixtures.broken_plugins"
"""The module of deliberately broken plugins (and of :class:`HonestReader`, the correct one)."""

ORDERS_ROWS = 60


@pytest.fixture
def pg_orders(pg_schema: PgSchema) -> PgSchema:
    """``orders`` in a fresh schema: a primary key, text with nulls, exact numerics, floats, dates, timestamps."""
    pg_schema.execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text, amount numeric(12,2) NOT NULL, qty integer, "
        "price double precision, paid boolean, day date, updated_at timestamptz NOT NULL)"
    )
    pg_schema.execute(
        "INSERT INTO orders SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE 'customer ' || i END, "
        "(i * 3.17)::numeric(12,2), i % 5, i / 3.0, i % 2 = 0, date '2024-01-01' + i, "
        "timestamptz '2024-01-01 00:00:00+00' + (i / 2) * interval '1 hour' "
        f"FROM generate_series(1, {ORDERS_ROWS}) AS i"
    )
    return pg_schema


@pytest.fixture
def pg_job(workdir: Path, pg_orders: PgSchema, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """``pg_job(implementation)``: a job reading ``orders`` with that custom reader (the DSN through ``${VAR}``)."""
    monkeypatch.setenv("KIT_PG_DSN", pg_orders.dsn)

    def write(implementation: str) -> Path:
        path = workdir / "orders.yaml"
        path.write_text(textwrap.dedent(f"""\
            version: 1
            name: orders
            source:
              type: postgres
              connection: {{dsn: "${{KIT_PG_DSN}}"}}
              tables: [{pg_orders.table("orders")}]
              reader: {{type: custom, implementation: "{implementation}", fallback: fail}}
            target: {{type: parquet, path: out/orders}}
            """), encoding="utf-8")
        return path

    return write
