"""Turn medians into the Markdown table, the goals verdicts, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.measure import Sample


@dataclass
class Row:
    """The medians of one method."""

    method: str
    group: str
    runs: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    rows_per_s: float
    mb_per_s: float
    x_copy: float
    x_python: float | None
    error: str = ""
    shape: str = "wide"
    """The table it moved (``bench.table``): ``wide`` is the reference table."""
    cpu_x_python: float | None = None
    """How many times less client CPU than the Python baseline over the same table (read-only against
    read-only)."""
    copy_mb_per_cpu_s: float | None = None
    """MB of binary COPY moved per client CPU second (start-up included)."""


def summarise(method: str, group: str, samples: list[Sample], rows: int, data_mb: float,
              shape: str = "wide") -> Row:
    """Medians of the successful runs (a method whose every run failed keeps its last error)."""
    good = [s for s in samples if s.ok]
    if not good:
        return Row(method, group, 0, float("nan"), float("nan"), float("nan"), 0, 0, float("nan"), None,
                   samples[-1].error if samples else "not run", shape)
    wall = statistics.median(s.wall_s for s in good)
    cpu = statistics.median(s.cpu_s for s in good)
    return Row(
        method=method,
        group=group,
        runs=len(good),
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=statistics.median(s.peak_rss_mb for s in good),
        rows_per_s=rows / wall,
        mb_per_s=data_mb / wall,
        x_copy=float("nan"),
        x_python=None,
        shape=shape,
        copy_mb_per_cpu_s=data_mb / cpu if cpu > 0 and shape != "empty" else None,
    )


def baseline(shape: str, group: str = "dativo") -> str:
    """The name of the Python baseline for a table shape (``dativo-read``: its read-only run)."""
    if group == "dativo-read":
        return PYTHON_READ_BASELINE
    return PYTHON_BASELINE if shape == "wide" else f"{PYTHON_BASELINE}, {shape}"


def relate(rows: list[Row]) -> None:
    """Fill each row's ratios to the COPY limit and to the Python baseline, over the same table, in the same
    run: wall time against the baseline end to end, client CPU against the baseline of its kind."""
    for row in rows:
        copy = next((r.wall_s for r in rows if r.group == "limit" and r.shape == row.shape and r.runs),
                    float("nan"))
        python = _get(rows, baseline(row.shape))
        row.x_copy = row.wall_s / copy
        row.x_python = (python.wall_s / row.wall_s) if python and row.runs else None
        own = _get(rows, baseline(row.shape, row.group))
        if own and row.runs and row.cpu_s > 0 and row.group.startswith("dativo"):
            row.cpu_x_python = own.cpu_s / row.cpu_s


BUILTIN_POSTGRES = ("postgres p1 → iceberg", "postgres p2 → iceberg")
"""The built-in reader in process: what the COPY and peer goals judge (not its Flight or sandboxed runs)."""
RUST_POSTGRES = ("rust_postgres p1 → iceberg", "rust_postgres p2 → iceberg")
PYTHON_BASELINE = "postgres-python → iceberg"
PYTHON_READ_BASELINE = "postgres-python → null"
RUST_READ = ("rust_postgres p1 → null", "rust_postgres p2 → null")
FIXED_COST = "empty table → iceberg (fixed cost)"
SECOND_SHAPES = ("narrow", "text")
GOAL_METHODS = (*BUILTIN_POSTGRES, *RUST_POSTGRES, PYTHON_BASELINE, "dlt connectorx → parquet",
                "dlt pyarrow → parquet", "rust_postgres p2 → null", "postgres p1 → iceberg, flight",
                "postgres p1 → iceberg, sandboxed", PYTHON_READ_BASELINE, *RUST_READ, FIXED_COST,
                *(f"{PYTHON_BASELINE}, {shape}" for shape in SECOND_SHAPES),
                *(f"rust_postgres p1 → iceberg, {shape}" for shape in SECOND_SHAPES))
"""Every method a goal names, by its exact name (a test checks that each is one of bench.methods')."""


def _get(rows: list[Row], name: str) -> Row | None:
    return next((r for r in rows if r.method == name and r.runs), None)


def fastest(rows: list[Row], names: tuple[str, ...]) -> Row | None:
    """The measured row with the lowest wall time among the methods named exactly ``names``."""
    return min((r for r in rows if r.method in names and r.runs), key=lambda r: r.wall_s, default=None)


def goals(rows: list[Row], scaling: dict[str, dict[str, float]] | None) -> list[tuple[str, str, str]]:
    """``(goal, measured, verdict)`` for every goal of the benchmark issue that this run can judge."""
    out: list[tuple[str, str, str]] = []

    def add(goal: str, value: float | None, target: float, better: str, fmt: str = "{:.2f}x") -> None:
        if value is None or value != value:  # missing or NaN
            out.append((goal, "not measured", "n/a"))
            return
        met = value <= target if better == "low" else value >= target
        if met:
            verdict = "met"
        elif "%" in fmt:  # an overhead: say how far above its ceiling
            verdict = f"not met ({value:+.0%} against at most {target:+.0%})"
        else:
            verdict = f"not met (by {abs(value / target - 1) * 100:.0f}%)"
        out.append((goal, fmt.format(value), verdict))

    best = fastest(rows, BUILTIN_POSTGRES)
    add("built-in postgres → iceberg ≤ 1.3x COPY", best.x_copy if best else None, 1.3, "low")
    cx = _get(rows, "dlt connectorx → parquet")
    pa_ = _get(rows, "dlt pyarrow → parquet")
    add("≥ 1.5x faster than dlt connectorx", cx.wall_s / best.wall_s if cx and best else None, 1.5, "high")
    add("≥ 6x faster than dlt pyarrow", pa_.wall_s / best.wall_s if pa_ and best else None, 6.0, "high")
    rust = fastest(rows, RUST_POSTGRES)
    add("rust_postgres → iceberg ≥ 10x postgres-python", rust.x_python if rust else None, 10.0, "high")
    rust_read = _get(rows, "rust_postgres p2 → null")
    add("rust_postgres read-only ≤ 1.1x COPY", rust_read.x_copy if rust_read else None, 1.1, "low")
    dativo_rss = [r.peak_rss_mb for r in rows if r.group.startswith("dativo") and r.runs]
    add("peak RSS ≤ 250 MB (worst Dativo method)", max(dativo_rss) if dativo_rss else None, 250, "low",
        "{:.0f} MB")
    if scaling:
        growth = [v["large"] / v["small"] for v in scaling.values() if v.get("small")]
        add("peak RSS at 5x rows within 10% (worst method)", max(growth) if growth else None, 1.10, "low")
    inproc, flight = _get(rows, "postgres p1 → iceberg"), _get(rows, "postgres p1 → iceberg, flight")
    sandboxed = _get(rows, "postgres p1 → iceberg, sandboxed")
    add("Flight boundary ≤ 15% overhead (same reader)", flight.wall_s / inproc.wall_s - 1 if flight and inproc
        else None, 0.15, "low", "{:+.0%}")
    add("sandbox ≤ 20% overhead (vs the same reader over Flight)",
        sandboxed.wall_s / flight.wall_s - 1 if sandboxed and flight else None, 0.20, "low", "{:+.0%}")
    # the 10x headline as client CPU, wall time near the COPY limit, flat memory, fixed cost
    add("rust_postgres → iceberg ≤ 1.15x COPY", rust.x_copy if rust else None, 1.15, "low")
    thrifty = _least_cpu(rows, RUST_POSTGRES)
    add("rust_postgres → iceberg: ≥ 10x less client CPU than postgres-python",
        thrifty.cpu_x_python if thrifty else None, 10.0, "high")
    thrifty_read = _least_cpu(rows, RUST_READ)
    add("rust_postgres read-only: ≥ 15x less client CPU than postgres-python read-only",
        thrifty_read.cpu_x_python if thrifty_read else None, 15.0, "high")
    fixed = _get(rows, FIXED_COST)
    add("fixed cost: `dativo run` of an empty table ≤ 0.3 s", fixed.wall_s if fixed else None, 0.3, "low",
        "{:.2f} s")
    if scaling:
        growth = [v["large"] / v["small"] for v in scaling.values() if v.get("small")]
        add("peak RSS at 5x rows within 5% (worst method)", max(growth) if growth else None, 1.05, "low")
    add("Flight boundary ≤ 8% overhead (same reader)", flight.wall_s / inproc.wall_s - 1 if flight and inproc
        else None, 0.08, "low", "{:+.0%}")
    for shape in SECOND_SHAPES:
        second = _get(rows, f"rust_postgres p1 → iceberg, {shape}")
        add(f"{shape} table: rust_postgres → iceberg ≥ 10x less client CPU than postgres-python",
            second.cpu_x_python if second else None, 10.0, "high")
    return out


def _least_cpu(rows: list[Row], names: tuple[str, ...]) -> Row | None:
    """The measured row with the least client CPU among the methods named exactly ``names``."""
    return min((r for r in rows if r.method in names and r.runs), key=lambda r: r.cpu_s, default=None)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def markdown(rows: list[Row], verdicts: list[tuple[str, str, str]], meta: dict[str, Any]) -> str:
    """The results as Markdown: context line, methods table, goals table."""
    lines = [
        f"{meta['rows']:,} rows × 50 columns ({meta['data_mb']:.0f} MB as binary COPY), "
        f"{meta['repetitions']} repetitions, medians; {meta['machine']}.",
        "",
        "| method | wall s | CPU s | peak RSS MB | rows/s | MB/s | × COPY | vs python | CPU vs python "
        "| COPY MB per CPU s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if not r.runs:
            lines.append(f"| {r.method} | – | – | – | – | – | – | {r.error[:60]} | – | – |")
            continue
        lines.append(
            f"| {r.method} | {r.wall_s:.2f} | {r.cpu_s:.2f} | {r.peak_rss_mb:.0f} | {r.rows_per_s:,.0f} "
            f"| {r.mb_per_s:.0f} | {_fmt(r.x_copy, '.2f')} | {_fmt(r.x_python, '.1f')}{'x' if r.x_python else ''} "
            f"| {_fmt(r.cpu_x_python, '.1f')}{'x' if r.cpu_x_python else ''} | {_fmt(r.copy_mb_per_cpu_s, '.0f')} |"
        )
    lines += ["", "| goal | measured | verdict |", "|---|--:|---|"]
    lines += [f"| {g} | {m} | {v} |" for g, m, v in verdicts]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """One line about the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    return (f"{psutil.cpu_count(logical=True)} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Linux {platform.release()}, Python {platform.python_version()}")


def write_json(path: Path, rows: list[Row], verdicts: list[tuple[str, str, str]], meta: dict[str, Any]) -> None:
    """The full results, for later comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "methods": [asdict(r) for r in rows],
               "goals": [dict(zip(("goal", "measured", "verdict"), g, strict=True)) for g in verdicts]}
    path.write_text(json.dumps(payload, indent=2, default=str))


def write_chart(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    """A horizontal bar chart of wall seconds per method, the COPY limit drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.runs]
    colours = {"limit": "#555555", "dativo": "#1f77b4", "dativo-read": "#9ecae1", "peer": "#ff7f0e"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(measured) + 1.5))
    ax.barh([r.method for r in measured], [r.wall_s for r in measured],
            color=[colours.get(r.group, "#999999") for r in measured])
    copy = next((r.wall_s for r in measured if r.group == "limit"), None)
    if copy:
        ax.axvline(copy, color="#555555", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds (lower is better)")
    ax.set_title(f"{meta['rows']:,} rows × 50 columns, PostgreSQL → target")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
