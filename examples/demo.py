"""``make demo``: an embedded PostgreSQL shop ingested into an embedded Iceberg lake, then read back.

1. Starts a private PostgreSQL server (``.dativo/demo-postgres``; the ``pgserver`` wheel, no root needed).
2. Creates the sample shop on first use (5,000 customers, 100,000 orders, every mapped type); on every
   later run adds 500 orders and touches 200 more, like a day of business.
3. Runs ``examples/jobs/postgres_to_iceberg.yaml`` with the real ``dativo`` command: incremental, merged by
   primary key into ``.dativo/catalog.db`` and ``.dativo/warehouse``.
4. Reads the Iceberg tables back and checks them against PostgreSQL (the first orders by id, so a rerun
   shows the same orders, some of them updated), stops the server, and says where to go next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("DATIVO_DEMO_DIR") or ROOT)  # where the job runs (a scratch folder in tests)
WORK = HOME / ".dativo"
JOB = ROOT / "examples" / "jobs" / "postgres_to_iceberg.yaml"
console = Console()
SAMPLE_ROWS = 5
NEXT_STEP = (
    "[bold]Next:[/] write your own reader or writer — docs/plugins/python.md (a 20-line class), or in "
    "Go, Rust or C++: docs/plugins/ (go.md, rust.md, cpp.md; protocol.md for any other language)."
)


def start_postgres() -> tuple[object, str]:
    """Start (or reuse the data of) the demo server; returns the server and its libpq URI."""
    warnings.filterwarnings("ignore", module="platformdirs")  # pgserver asks for XDG_RUNTIME_DIR
    import pgserver

    data = WORK / "demo-postgres"
    WORK.mkdir(exist_ok=True)
    server = pgserver.get_server(data, cleanup_mode="stop")
    return server, server.get_uri()


def prepare_shop(dsn: str) -> None:
    """Create the shop the first time; afterwards, add and change a few orders."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()[0]
        if not exists:
            console.print("[cyan]Creating the sample shop[/] (5,000 customers, 100,000 orders)…")
            with conn.transaction():
                conn.execute((ROOT / "examples" / "shop" / "schema.sql").read_text())
                conn.execute("SELECT add_orders(100000)")
        else:
            console.print("[cyan]A day of business:[/] 500 new orders, 200 orders updated…")
            with conn.transaction():
                conn.execute("SELECT add_orders(500)")
                conn.execute(
                    "UPDATE orders SET status = 'shipped', updated_at = now() "
                    "WHERE id IN (SELECT id FROM orders WHERE status = 'paid' ORDER BY id LIMIT 200)"
                )
        conn.execute("ANALYZE")


def run_job(dsn: str) -> None:
    """Run the job through the real command line, as a user would."""
    env = {**os.environ, "PG_DSN": dsn}
    dativo = Path(sys.executable).parent / "dativo"
    subprocess.run([str(dativo), "run", str(JOB)], env=env, cwd=HOME, check=True)


def show_lake(dsn: str) -> None:
    """Read the Iceberg tables back and compare their row counts with PostgreSQL."""
    import psycopg
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "dativo", uri=f"sqlite:///{WORK / 'catalog.db'}", warehouse=f"file://{WORK / 'warehouse'}"
    )
    with psycopg.connect(dsn) as conn:
        for table in ("customers", "orders"):
            iceberg = catalog.load_table(("shop", table)).scan().to_arrow()
            source = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            mark = "[green]✓[/]" if iceberg.num_rows == source else "[red]✗[/]"
            console.print(f"{mark} shop.{table}: {iceberg.num_rows:,} rows in Iceberg, {source:,} in PostgreSQL")
    orders = catalog.load_table(("shop", "orders"))
    sample = orders.scan(  # the first orders by primary key: the same on every run, updates visible
        row_filter=f"id <= {SAMPLE_ROWS}",
        selected_fields=("id", "status", "amount", "placed_at", "tags", "note"),
    ).to_arrow().sort_by("id")
    view = Table(*sample.column_names, title=f"shop.orders in Iceberg: the first {SAMPLE_ROWS} orders by id")
    for row in sample.to_pylist():
        view.add_row(*(str(v) for v in row.values()))
    console.print(view)
    snapshot = orders.current_snapshot()
    if snapshot is not None:
        console.print(f"Current snapshot {snapshot.snapshot_id}: run {snapshot.summary.get('dativo.run-id')}")


def main() -> int:
    server, dsn = start_postgres()
    try:
        prepare_shop(dsn)
        run_job(dsn)
        show_lake(dsn)
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        server.cleanup()  # type: ignore[attr-defined]
    console.print("Run [bold]make demo[/] again: a day of business later, only what changed is ingested.")
    console.print(NEXT_STEP, soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
