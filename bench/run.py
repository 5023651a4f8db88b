"""``make bench``: PostgreSQL → Iceberg, every method side by side with the COPY limit and with peers.

Usage::

    python -m bench.run [--rows N | --quick] [--repetitions K] [--dsn DSN] [--only SUBSTRING ...]
                        [--scaling] [--write-docs]

Methods run alternately (one repetition of every method, then the next) so that a slow minute of the
machine hurts all of them alike; medians are reported. Every run must move every row of the table (a Dativo
job's run report and the peers say how many they moved): a run that moved another number counts as failed,
and the benchmark exits with status 1 naming it. Results: a Markdown table on stdout,
``bench/results/<date>.json`` and ``bench/results/<date>.png``; ``--write-docs`` also puts them into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import measure, report, server, table
from bench.methods import RAY_ADDRESS_ENV, ROOT, Method, Setup, all_methods, rows_problem

RESULTS = ROOT / "bench" / "results"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Measure what an installed Dativo costs: modules compiled once and cached, as every installer does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def measure_all(methods: list[Method], srv: server.Server, names: dict[str, str], repetitions: int
                ) -> dict[str, list]:
    """Run every method ``repetitions`` times, alternating, on the table of its shape (``names``); returns the
    samples per method.

    A run that moved other than the table's row count is a failed sample (its error says how many it moved).
    """
    counts = {shape: table.row_count(srv.dsn, name) for shape, name in names.items()}
    samples: dict[str, list[measure.Sample]] = {m.name: [] for m in methods}
    for rep in range(repetitions):
        for method in methods:
            work = Path(tempfile.mkdtemp(prefix="dativo-bench-"))
            try:
                setup = Setup(dsn=srv.dsn, psql=srv.psql, table=names[method.shape], work=work)
                expected = counts[method.shape]
                stdout = work / "stdout" if method.rows_moved is not None else Path(os.devnull)
                sample = measure.run(method.command(setup), env=_env(), cwd=work, stdout_path=str(stdout))
                moved = stdout.read_text(errors="replace")
                problem = rows_problem(method, moved, expected) if sample.ok else None
                if problem:
                    sample.ok, sample.error, sample.miscounted = False, problem, True
            finally:
                shutil.rmtree(work, ignore_errors=True)
            samples[method.name].append(sample)
            state = f"{sample.wall_s:7.2f} s {sample.peak_rss_mb:6.0f} MB" if sample.ok else f"FAILED {sample.error}"
            print(f"  [{rep + 1}/{repetitions}] {method.name:32s} {state}", file=sys.stderr, flush=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100k rows, 2 repetitions")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--dsn", help="an existing server (default: an embedded one)")
    parser.add_argument("--only", nargs="*", default=[], help="methods whose name contains one of these")
    parser.add_argument("--scaling", action="store_true", help="also measure peak RSS at 5x the rows")
    parser.add_argument("--write-docs", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="ray: also run the Ray methods, on a local two-node cluster started for the bench")
    args = parser.parse_args(argv)
    cluster = None
    if args.executor == "ray":
        from bench.ray_cluster import LocalCluster

        print("ray: starting a local cluster of 2 nodes …", file=sys.stderr, flush=True)
        cluster = LocalCluster().start()
        os.environ[RAY_ADDRESS_ENV] = cluster.address
    try:
        return _main(args)
    finally:
        if cluster is not None:
            cluster.stop()


def _main(args: argparse.Namespace) -> int:
    rows, repetitions = (100_000, 2) if args.quick else (args.rows, args.repetitions)

    methods, skipped = [], []
    for method in all_methods():
        if args.only and not any(word in method.name for word in args.only) and method.group != "limit":
            continue
        why = method.available()
        (skipped if why else methods).append((method, why))
    methods = [m for m, _ in methods]
    shapes = {"wide"} | {m.shape for m in methods if m.group != "limit"}
    methods = [m for m in methods if m.shape in shapes]  # a second table's COPY limit only if it is used

    srv = server.external(args.dsn) if args.dsn else server.embedded()
    try:
        print(f"tables: {rows:,} rows ({', '.join(sorted(shapes))}) …", file=sys.stderr, flush=True)
        names = {shape: table.ensure(srv.dsn, rows, shape) for shape in shapes}
        sizes = {shape: table.copy_bytes(srv.dsn, name) / 2**20 for shape, name in names.items()}
        counts = {shape: table.row_count(srv.dsn, name) for shape, name in names.items()}
        data_mb = sizes["wide"]
        samples = measure_all(methods, srv, names, repetitions)
        summary = [report.summarise(m.name, m.group, samples[m.name], counts[m.shape], sizes[m.shape], m.shape)
                   for m in methods]
        report.relate(summary)
        scaling, big = None, {}
        if args.scaling:
            large = table.ensure(srv.dsn, rows * 5)
            dativo = [m for m in methods if m.group.startswith("dativo") and m.shape == "wide"]
            big = measure_all(dativo, srv, {"wide": large}, 1)
            scaling = {
                m.name: {"small": next(r.peak_rss_mb for r in summary if r.method == m.name),
                         "large": big[m.name][0].peak_rss_mb}
                for m in dativo if big[m.name][0].ok
            }
    finally:
        srv.stop()

    verdicts = report.goals(summary, scaling)
    meta = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "rows": rows, "data_mb": data_mb,
            "repetitions": repetitions, "machine": report.machine(), "scaling": scaling,
            "skipped": {m.name: why for m, why in skipped}}
    text = report.markdown(summary, verdicts, meta)
    if scaling:
        text += "\n| method | peak RSS MB at N | at 5N |\n|---|--:|--:|\n" + "".join(
            f"| {k} | {v['small']:.0f} | {v['large']:.0f} |\n" for k, v in scaling.items())
    if skipped:
        text += "\nNot run: " + "; ".join(f"{m.name} ({why})" for m, why in skipped) + "\n"
    print(text)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    report.write_json(RESULTS / f"{stamp}.json", summary, verdicts, meta)
    report.write_chart(RESULTS / f"{stamp}.png", summary, meta)
    print(f"results: bench/results/{stamp}.json, bench/results/{stamp}.png", file=sys.stderr)
    wrong = [(m, s.error) for runs in (samples, big) for m, ss in runs.items() for s in ss if s.miscounted]
    if wrong:  # a method that loses or duplicates rows has no speed worth reporting
        for method_name, error in wrong:
            print(f"ERROR: {method_name}: {error}", file=sys.stderr)
        print("the benchmark failed: a method did not move every row exactly once", file=sys.stderr)
        return 1
    if args.write_docs:
        write_docs(text, stamp)
    return 0


def write_docs(text: str, stamp: str) -> None:
    """Replace the results part of docs/benchmarks.md with ``text``."""
    path = ROOT / "docs" / "benchmarks.md"
    marker = "<!-- results -->"
    head = path.read_text().split(marker)[0] if path.exists() else "# Benchmarks\n\n"
    shutil.copyfile(RESULTS / f"{stamp}.png", ROOT / "docs" / "benchmarks.png")
    path.write_text(
        f"{head}{marker}\n\nLatest run ({stamp}, `bench/results/{stamp}.json`):\n\n{text}\n"
        "![wall seconds per method](benchmarks.png)\n"
    )


if __name__ == "__main__":
    sys.exit(main())
