"""Parquet codecs and levels on the benchmark table: CPU seconds to encode and bytes on disk.

Usage::

    python -m bench.encoding [--rows N] [--dsn DSN]

Reads ``bench.t_<rows>`` once (with the built-in ``postgres`` reader's planning and ADBC), then encodes it
in memory the way the Iceberg writer does (its dictionary policy, 16 MiB row groups, decimals as integers)
with each codec, and prints a Markdown table: CPU s (the process's, so threads inside Arrow count), wall s,
MB written, and size and CPU relative to zstd at its default level.
"""

from __future__ import annotations

import argparse
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from bench import server, table
from dativo.writers.encoding import parquet_options

CODECS: list[tuple[str, int | None]] = [
    ("zstd", None), ("zstd", 1), ("zstd", 2), ("zstd", 3), ("lz4", None), ("snappy", None), ("none", None),
]
"""``(codec, level)``; ``lz4`` is what pyarrow writes as Parquet's LZ4_RAW; ``None``: the codec's default."""
ROW_GROUP_BYTES = 16 * 2**20


def load(dsn: str, name: str) -> pa.Table:
    """The whole table as Arrow, read by the built-in ``postgres`` reader (the schema the writer gets)."""
    import logging

    from dativo.api import Context
    from dativo.readers.postgres import PostgresConfig, PostgresReader

    config = PostgresConfig.model_validate({"connection": {"dsn": dsn}, "tables": [name]})
    reader = PostgresReader(config, Context("bench", "encoding", "postgres", logging.getLogger("bench")))
    try:
        dataset = next(d for d in reader.discover() if d.name == name)
        batches = [b for split in reader.plan(dataset, None)
                   for b in pa.RecordBatchReader.from_stream(reader.read(split))]
    finally:
        reader.close()
    return pa.Table.from_batches(batches)


def encode(data: pa.Table, codec: str, level: int | None) -> tuple[float, float, int]:
    """``(cpu_s, wall_s, bytes)`` of writing ``data`` as one Parquet file in memory."""
    sink = pa.BufferOutputStream()
    rows_per_group = max(1, int(data.num_rows * ROW_GROUP_BYTES / max(data.nbytes, 1)))
    cpu, wall = time.process_time(), time.perf_counter()
    with pq.ParquetWriter(sink, data.schema, compression=codec, compression_level=level,
                          store_decimal_as_integer=True, **parquet_options(data.schema)) as writer:
        for start in range(0, data.num_rows, rows_per_group):
            part = data.slice(start, rows_per_group)
            writer.write_table(part, row_group_size=max(part.num_rows, 1))
    return time.process_time() - cpu, time.perf_counter() - wall, sink.getvalue().size


def main(argv: list[str] | None = None) -> int:
    """Measure every codec; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.encoding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dsn", help="an existing server (default: the embedded one)")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    srv = server.external(args.dsn) if args.dsn else server.embedded()
    try:
        data = load(srv.dsn, table.ensure(srv.dsn, args.rows))
    finally:
        srv.stop()
    results = []
    for codec, level in CODECS:
        runs = sorted(encode(data, codec, level) for _ in range(args.repetitions))
        results.append((codec, level, runs[len(runs) // 2]))
        print(f"  {codec} {level}: {runs[len(runs) // 2]}", file=sys.stderr, flush=True)
    base_cpu, _, base_size = next(r for c, lv, r in results if c == "zstd" and lv is None)
    print(f"{data.num_rows:,} rows × {data.num_columns} columns, {data.nbytes / 2**20:.0f} MB of Arrow; "
          f"median of {args.repetitions}.\n")
    print("| codec | level | CPU s | wall s | MB | size vs zstd | CPU vs zstd |\n|---|--:|--:|--:|--:|--:|--:|")
    for codec, level, (cpu, wall, size) in results:
        print(f"| {codec} | {level if level is not None else 'default'} | {cpu:.2f} | {wall:.2f} | "
              f"{size / 2**20:.0f} | {size / base_size:.2f} | {cpu / base_cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
