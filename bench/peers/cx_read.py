"""A plain ConnectorX read into Arrow, two partitions on the primary key (a peer reference, read only).

Run in the peers' own virtualenv: ``cx_read.py DSN TABLE PARTITIONS``.
"""

from __future__ import annotations

import sys

import connectorx as cx


def main(dsn: str, table: str, partitions: str) -> None:
    """Read the whole table, print its row count (the benchmark checks it) and drop it."""
    result = cx.read_sql(
        dsn, f"SELECT * FROM {table}", return_type="arrow", partition_on="id", partition_num=int(partitions)
    )
    print(result.num_rows)


if __name__ == "__main__":
    main(*sys.argv[1:4])
