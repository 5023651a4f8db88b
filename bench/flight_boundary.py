"""What the out-of-process boundary costs: Arrow over a local Unix socket, and a job in vs out of process.

    .venv/bin/python bench/flight_boundary.py [--gb 2] [--batch-rows 262144] [--job-rows 1000000] [--repeat 3]

1. Throughput: a reader served by ``dativo plugin serve`` streams ``--gb`` GB of int64 + double batches
   through ``DoGet``; the host pulls them with the proxy the engine uses (``FlightReader.read``), and, as the
   ceiling, with a bare pyarrow ``FlightClient``.
2. A ``--job-rows`` job (``acme_readers:OrdersReader`` into Parquet, and into the null writer) run by the
   engine in process, then with the same reader served out of process (``command:``, including its start
   and stop), and by a plugin that runs already (``flight:``: the boundary alone).

Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as fl
import yaml
from pydantic import BaseModel

from dativo.api import Reader, Split

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `bench.…` plugins, when run as a script


class Blocks(Reader):
    """``gb`` GB of one pre-built batch (int64 + double) sent again and again: only transport is measured."""

    class Config(BaseModel):
        gb: float = 2.0
        batch_rows: int = 262_144

    schema = pa.schema([("id", pa.int64()), ("value", pa.float64())])

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        ids = pa.array(range(self.config.batch_rows), pa.int64())
        batch = pa.record_batch([ids, pa.compute.multiply(ids, 0.5)], schema=self.schema)
        for _ in range(int(self.config.gb * 1e9 // batch.nbytes)):
            yield batch


def _serve_command(target: str) -> list[str]:
    return [sys.executable, "-m", "dativo", "plugin", "serve", target]


def throughput(gb: float, batch_rows: int) -> dict[str, float]:
    """GB/s of ``DoGet`` through the engine's proxy and through a bare client."""
    from dativo.api import Context
    from dativo.plugins.process import CommandLauncher, executable  # noqa: F401
    from dativo.plugins.remote import plugin_class

    launcher = CommandLauncher(
        _serve_command("bench.flight_boundary:Blocks"), cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, name="blocks"
    )
    cls = plugin_class("reader", launcher)
    options = cls.Config.model_validate({"gb": gb, "batch_rows": batch_rows})
    ctx = Context(job="bench", run_id="r", plugin="blocks", logger=logging.getLogger("bench"))
    results: dict[str, float] = {}
    reader = cls(options, ctx)
    try:
        for name in ("proxy", "bare client"):
            started, nbytes = time.perf_counter(), 0
            if name == "proxy":
                for batch in reader.read(Split("bench")):
                    nbytes += batch.nbytes
            else:
                stream = reader._conn.client.do_get(
                    fl.Ticket(json.dumps({"split": {"dataset": "bench"}}).encode())
                )
                for chunk in stream:
                    nbytes += chunk.data.nbytes
            seconds = time.perf_counter() - started
            results[name] = nbytes / seconds / 1e9
            print(
                f"  DoGet {nbytes / 1e9:.2f} GB via {name}: {seconds:.2f} s = {results[name]:.2f} GB/s",
                flush=True,
            )
    finally:
        reader.close()
    return results


def job(rows: int, repeat: int) -> None:
    """Seconds of the same job in process and out of process."""
    from dativo.config import load_job
    from dativo.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "dummy.csv").write_text("id\n1\n")
        running = subprocess.Popen(
            [
                *_serve_command("acme_readers:OrdersReader"),
                "--listen",
                f"grpc+unix://{work / 'running.sock'}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        location = json.loads(running.stdout.readline())["location"]  # type: ignore[union-attr]
        forms = (
            ("in process", "acme_readers:OrdersReader"),
            (
                "out of process",
                {"command": _serve_command("acme_readers:OrdersReader"), "env": {"PYTHONPATH": str(ROOT)}},
            ),
            ("running (flight:)", {"flight": location}),
        )
        for target in (
            {"type": "parquet", "path": "out"},
            {"type": "null", "writer": {"type": "custom", "implementation": "bench.null_writer:NullWriter"}},
        ):
            for where, implementation in forms:
                times = []
                for i in range(repeat):
                    path = work / f"job-{i}.yaml"
                    path.write_text(
                        yaml.safe_dump(
                            {
                                "version": 1,
                                "name": "orders",
                                "source": {
                                    "type": "csv",
                                    "path": "dummy.csv",
                                    "reader": {
                                        "type": "custom",
                                        "implementation": implementation,
                                        "fallback": "fail",
                                        "options": {"rows": rows, "batch_size": 65_536},
                                    },
                                },
                                "target": {
                                    **target,
                                    **(
                                        {"path": f"out/{i}-{len(times)}-{where[0]}"}
                                        if "path" in target
                                        else {}
                                    ),
                                },
                            }
                        )
                    )
                    started = time.perf_counter()
                    report = Engine(load_job(path), work_dir=work / ".dativo").run()
                    times.append(time.perf_counter() - started)
                    assert report.rows_written == rows or target["type"] == "null"
                print(
                    f"  {rows:,} rows → {target['type']:<7} {where:<17} median {statistics.median(times):.3f} s "
                    f"(runs: {', '.join(f'{t:.3f}' for t in times)})",
                    flush=True,
                )
        running.kill()
        running.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--batch-rows", type=int, default=262_144)
    parser.add_argument("--job-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("Arrow over a local Unix socket (DoGet):")
    for _ in range(args.repeat):
        throughput(args.gb, args.batch_rows)
    print("A job, in process and out of process (including the plugin's start and stop):")
    job(args.job_rows, args.repeat)


if __name__ == "__main__":
    main()
