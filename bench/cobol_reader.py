"""Records/s per core of the ``cobol`` reader plugin: a narrow and a wide layout, F and V files, 1 and 2 splits.

    .venv/bin/python bench/cobol_reader.py [--narrow 1000000] [--wide 200000] [--repeat 3] [--no-chart]

- narrow: 6 fields, 45 bytes (zoned, text, COMP-3, COMP); wide: 151 fields, 1,510 bytes (every kind).
- F and V files of records of the layout's length, and ``V mixed``: records 0–31 bytes longer, so the RDW
  changes from record to record and no run of equal lengths can be skipped at once.
- Each file is made once in a temporary folder from a few thousand random records, tiled. The reader then
  plans and reads it exactly as the engine calls it (nothing is written): ``1 split`` in one thread, and
  ``2 splits`` read by two threads at once (V files: the RDW chain is walked once in ``plan`` to find the
  boundaries, and that walk is counted).
- records/s per core = records ÷ CPU seconds of the process (best of ``--repeat``); for one split that is also
  about records ÷ wall seconds. Goals: ≥ 1M/s narrow and ≥ 150k/s wide per core.

Writes ``bench/results/cobol-<date>.json`` and a PNG chart beside it. Needs the plugin installed
(``uv pip install -e examples/plugins/cobol_reader``).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dativo_cobol.reader import CobolConfig, CobolReader

from dativo.api import Context

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"narrow": 1_000_000, "wide": 150_000}

NARROW = """\
       01  TXN-REC.
           05  TXN-ID            PIC 9(12).
           05  ACCOUNT-NO        PIC X(12).
           05  AMOUNT            PIC S9(11)V99 COMP-3.
           05  CHANNEL           PIC S9(4) COMP.
           05  TXN-DATE          PIC 9(8).
           05  STATUS-CODE       PIC X(4).
"""
# Ten fields, 100 bytes, repeated 15 times (F01-… to F15-…), after a 10-byte id: 151 fields, 1,510 bytes.
_WIDE_GROUP = [("NAME", "PIC X(20)"), ("DATE", "PIC 9(8)"), ("AMT", "PIC S9(9)V99 COMP-3"),
               ("CODE", "PIC S9(4) COMP"), ("REF", "PIC X(10)"), ("PRICE", "PIC S9(7)V99"),
               ("COUNT", "PIC 9(9) COMP"), ("MEMO", "PIC X(30)"), ("BAL", "PIC S9(15)V99 COMP-3"),
               ("FLAG", "PIC X(2)")]
WIDE = "       01  WIDE-REC.\n           05  REC-ID            PIC 9(10).\n" + "".join(
    f"           05  F{g:02d}-{name:<14}{pic}.\n" for g in range(1, 16) for name, pic in _WIDE_GROUP)


def _packed(value: int, digits: int) -> bytes:
    text = str(abs(value)).rjust(digits + (1 - digits % 2), "0") + ("D" if value < 0 else "C")
    return bytes.fromhex(text)


def _zoned(value: int, digits: int, signed: bool) -> bytes:
    text = str(abs(value)).rjust(digits, "0").encode("cp037")
    if not signed:
        return text
    return text[:-1] + bytes([(0xD0 if value < 0 else 0xC0) | (text[-1] & 0x0F)])


def _text(rng: random.Random, size: int) -> bytes:
    words = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "", "ZÜRICH"]
    return " ".join(rng.sample(words, 3)).ljust(size)[:size].encode("cp037")


def _signed(rng: random.Random, digits: int) -> int:
    return rng.randint(-(10**digits - 1), 10**digits - 1)


def narrow_record(rng: random.Random) -> bytes:
    return b"".join([_zoned(rng.randint(0, 10**12 - 1), 12, False), _text(rng, 12), _packed(_signed(rng, 13), 13),
                     rng.randint(-9999, 9999).to_bytes(2, "big", signed=True),
                     _zoned(rng.randint(19700101, 20991231), 8, False), _text(rng, 4)])


def wide_record(rng: random.Random) -> bytes:
    parts = [_zoned(rng.randint(0, 10**10 - 1), 10, False)]
    for _ in range(15):
        parts += [_text(rng, 20), _zoned(rng.randint(19700101, 20991231), 8, False), _packed(_signed(rng, 11), 11),
                  rng.randint(-9999, 9999).to_bytes(2, "big", signed=True), _text(rng, 10),
                  _zoned(_signed(rng, 9), 9, True), rng.randint(0, 999_999_999).to_bytes(4, "big"), _text(rng, 30),
                  _packed(_signed(rng, 17), 17), _text(rng, 2)]
    return b"".join(parts)


FORMATS = {"F": "F", "V": "V", "V mixed": "V"}
"""Each file kind the bench reads and its ``record_format``: ``V mixed`` records carry 0–31 bytes of trailing
spaces past the layout, so their RDWs differ from one record to the next as in most real V files."""


def make_file(folder: Path, name: str, records: int, fmt: str, make: Any) -> Path:
    rng = random.Random(8)
    distinct = [make(rng) for _ in range(2048)]
    if fmt == "V mixed":
        distinct = [r + b"\x40" * rng.randrange(32) for r in distinct]
    if FORMATS[fmt] == "V":
        distinct = [(len(r) + 4).to_bytes(2, "big") + b"\0\0" + r for r in distinct]
    block = b"".join(distinct)
    path = folder / f"{name}-{fmt.replace(' ', '-')}.dat"
    with open(path, "wb") as out:
        for start in range(0, records, len(distinct)):
            out.write(block if records - start >= len(distinct) else b"".join(distinct[: records - start]))
    return path


def measure(path: Path, copybook: Path, fmt: str, splits: int, repeat: int, records: int) -> dict[str, Any]:
    """Best (lowest CPU) of ``repeat`` full reads with ``splits`` splits read by as many threads."""
    size_mb = path.stat().st_size / 2**20
    config = CobolConfig(path=str(path), copybook=str(copybook), record_format=FORMATS[fmt],
                         split_mb=size_mb / splits + 1e-6 if splits > 1 else 1e9)
    ctx = Context(job="bench", run_id="bench", plugin="cobol", logger=logging.getLogger("bench"))
    reader = CobolReader(config, ctx)
    dataset = reader.discover()[0]
    best: dict[str, Any] = {}
    for _ in range(repeat):
        counts: list[int] = []
        wall, cpu = time.perf_counter(), time.process_time()
        plan = reader.plan(dataset, None)

        def run(split: Any) -> None:
            counts.append(sum(b.num_rows for b in reader.read(split)))

        threads = [threading.Thread(target=run, args=(s,)) for s in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert sum(counts) == records, (sum(counts), records)
        if not best or cpu < best["cpu_s"]:
            best = {"splits": len(plan), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                    "records_per_s": round(records / wall), "records_per_s_per_core": round(records / cpu)}
    return best


def main() -> None:
    """Make the files, read them, print a table, write JSON and a chart."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--narrow", type=int, default=1_000_000, help="records of the narrow layout")
    parser.add_argument("--wide", type=int, default=200_000, help="records of the wide layout")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for layout, text, make, records in (("narrow", NARROW, narrow_record, args.narrow),
                                            ("wide", WIDE, wide_record, args.wide)):
            copybook = folder / f"{layout}.cpy"
            copybook.write_text(text)
            fields = text.count(" PIC ")
            length = len(make(random.Random(1)))
            for fmt in FORMATS:
                path = make_file(folder, layout, records, fmt, make)
                for splits in (1, 2):
                    row = measure(path, copybook, fmt, splits, args.repeat, records)
                    results.append({"layout": layout, "fields": fields, "bytes": length, "format": fmt,
                                    "records": records, **row, "goal_per_core": GOALS[layout]})
    print("| layout | fields × bytes | format | splits | wall s | CPU s | records/s | records/s per core | goal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        verdict = "met" if r["records_per_s_per_core"] >= r["goal_per_core"] else "MISSED"
        print(f"| {r['layout']} | {r['fields']} × {r['bytes']} | {r['format']} | {r['splits']} | {r['wall_s']} | "
              f"{r['cpu_s']} | {r['records_per_s']:,} | {r['records_per_s_per_core']:,} | "
              f"≥ {r['goal_per_core']:,}: {verdict} |")
    stamp = datetime.now().strftime("%Y-%m-%d-%H%M")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"cobol-{stamp}.json").write_text(json.dumps({"benchmark": "cobol_reader", "results": results},
                                                            indent=2))
    if not args.no_chart:
        try:
            chart(RESULTS / f"cobol-{stamp}.png", results)
        except ImportError:
            print("matplotlib is not installed: no chart (pip install matplotlib, or --no-chart)")


def chart(path: Path, results: list[dict[str, Any]]) -> None:
    """Records/s per core of each case, the goal of its layout drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, layout in zip(axes, ("narrow", "wide"), strict=True):
        rows = [r for r in results if r["layout"] == layout]
        ax.bar([f"{r['format']} ×{r['splits']}" for r in rows], [r["records_per_s_per_core"] for r in rows],
               color="#1f77b4")
        ax.axhline(GOALS[layout], color="#d62728", linestyle="--", linewidth=1)
        ax.set_title(f"{layout}: {rows[0]['fields']} fields, {rows[0]['bytes']} bytes")
        ax.set_ylabel("records/s per core")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
