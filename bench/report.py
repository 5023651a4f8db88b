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


def summarise(method: str, group: str, samples: list[Sample], rows: int, data_mb: float) -> Row:
    """Medians of the successful runs (a method whose every run failed keeps its last error)."""
    good = [s for s in samples if s.ok]
    if not good:
        return Row(method, group, 0, float("nan"), float("nan"), float("nan"), 0, 0, float("nan"), None,
                   samples[-1].error if samples else "not run")
    wall = statistics.median(s.wall_s for s in good)
    return Row(
        method=method,
        group=group,
        runs=len(good),
        wall_s=wall,
        cpu_s=statistics.median(s.cpu_s for s in good),
        peak_rss_mb=statistics.median(s.peak_rss_mb for s in good),
        rows_per_s=rows / wall,
        mb_per_s=data_mb / wall,
        x_copy=float("nan"),
        x_python=None,
    )


def relate(rows: list[Row]) -> None:
    """Fill each row's ratio to the COPY limit and to the Python baseline measured in the same run."""
    copy = next((r.wall_s for r in rows if r.group == "limit" and r.runs), float("nan"))
    python = next((r.wall_s for r in rows if r.method == PYTHON_BASELINE and r.runs), None)
    for row in rows:
        row.x_copy = row.wall_s / copy
        row.x_python = (python / row.wall_s) if python and row.runs else None


BUILTIN_POSTGRES = ("postgres p1 → iceberg", "postgres p2 → iceberg")
"""The built-in reader in process: what the COPY and peer goals judge (not its Flight or sandboxed runs)."""
RUST_POSTGRES = ("rust_postgres p1 → iceberg", "rust_postgres p2 → iceberg")
PYTHON_BASELINE = "postgres-python → iceberg"
GOAL_METHODS = (*BUILTIN_POSTGRES, *RUST_POSTGRES, PYTHON_BASELINE, "dlt connectorx → parquet",
                "dlt pyarrow → parquet", "rust_postgres p2 → null", "postgres p1 → iceberg, flight",
                "postgres p1 → iceberg, sandboxed")
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
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or value != value else format(value, spec)


def markdown(rows: list[Row], verdicts: list[tuple[str, str, str]], meta: dict[str, Any]) -> str:
    """The results as Markdown: context line, methods table, goals table."""
    lines = [
        f"{meta['rows']:,} rows × 50 columns ({meta['data_mb']:.0f} MB as binary COPY), "
        f"{meta['repetitions']} repetitions, medians; {meta['machine']}.",
        "",
        "| method | wall s | CPU s | peak RSS MB | rows/s | MB/s | × COPY | vs python |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        if not r.runs:
            lines.append(f"| {r.method} | – | – | – | – | – | – | {r.error[:60]} |")
            continue
        lines.append(
            f"| {r.method} | {r.wall_s:.2f} | {r.cpu_s:.2f} | {r.peak_rss_mb:.0f} | {r.rows_per_s:,.0f} "
            f"| {r.mb_per_s:.0f} | {_fmt(r.x_copy, '.2f')} | {_fmt(r.x_python, '.1f')}{'x' if r.x_python else ''} |"
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
