"""dlt ``sql_database`` → local Parquet files, with the ``pyarrow`` or ``connectorx`` backend (a peer reference).

Run in the peers' own virtualenv (``bench/.venv-peers``): ``dlt_load.py DSN SCHEMA TABLE BACKEND OUT_DIR``.
"""

from __future__ import annotations

import sys

import dlt
from dlt.sources.sql_database import sql_database


def main(dsn: str, schema: str, table: str, backend: str, out_dir: str) -> None:
    """Load one table the way dlt's documentation recommends for fast SQL extraction; print its row count."""
    source = sql_database(
        credentials=dsn.replace("postgresql://", "postgresql+psycopg2://", 1),
        schema=schema,
        table_names=[table],
        backend=backend,
        chunk_size=100_000,
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{backend}",
        destination=dlt.destinations.filesystem(bucket_url=f"file://{out_dir}"),
        dataset_name="bench",
        pipelines_dir=f"{out_dir}/.dlt",
    )
    pipeline.run(source, loader_file_format="parquet")
    print(pipeline.last_trace.last_normalize_info.row_counts.get(table, 0))  # the rows it loaded, checked


if __name__ == "__main__":
    main(*sys.argv[1:6])
