"""Records/s of the ``cobol`` reader plugin on one core: a 20-field layout, decoded batch by batch.

    .venv/bin/python bench/cobol_reader.py [--records 1000000] [--batch-rows 65536] [--repeat 3] [--rdw]

Needs the plugin installed (``uv pip install -e examples/plugins/cobol_reader``). The data file is made once
in a temporary folder from a few thousand random records, tiled; the reader then reads it as one split in one
thread, exactly as the engine would call it, and every batch is pulled (nothing is written).
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from pathlib import Path

from dativo_cobol.reader import CobolConfig, CobolReader

from dativo.api import Context

COPYBOOK = """\
       01  TXN-REC.
           05  TXN-ID            PIC 9(12).
           05  ACCOUNT-NO        PIC X(16).
           05  BRANCH            PIC X(6).
           05  CUSTOMER-NAME     PIC X(30).
           05  TXN-DATE          PIC 9(8).
           05  TXN-TIME          PIC 9(6).
           05  AMOUNT            PIC S9(11)V99 COMP-3.
           05  FEE               PIC S9(5)V99 COMP-3.
           05  BALANCE           PIC S9(13)V99 COMP-3.
           05  RATE              PIC S9(3)V9(6) COMP-3.
           05  POINTS            PIC S9(7) COMP-3.
           05  CHANNEL           PIC S9(4) COMP.
           05  TERMINAL          PIC 9(9) COMP.
           05  SEQUENCE-NO       PIC S9(18) COMP.
           05  CURRENCY          PIC X(3).
           05  STATUS-CODE       PIC X(2).
           05  QTY               PIC S9(5).
           05  UNIT-PRICE        PIC S9(7)V99.
           05  TAX               PIC 9(5)V99.
           05  MEMO              PIC X(20).
"""


def _packed(value: int, digits: int) -> bytes:
    text = str(abs(value)).rjust(digits + (1 - digits % 2), "0") + ("D" if value < 0 else "C")
    return bytes.fromhex(text)


def _zoned(value: int, digits: int, signed: bool) -> bytes:
    text = str(abs(value)).rjust(digits, "0").encode("cp037")
    if not signed:
        return text
    last = (0xD0 if value < 0 else 0xC0) | (text[-1] & 0x0F)
    return text[:-1] + bytes([last])


def _text(value: str, size: int) -> bytes:
    return value.ljust(size)[:size].encode("cp037")


def _record(rng: random.Random) -> bytes:
    def signed(digits: int) -> int:
        return rng.randint(-(10**digits - 1), 10**digits - 1)

    words = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "STARK", "WAYNE"]
    return b"".join([
        _zoned(rng.randint(0, 10**12 - 1), 12, False),
        _text(f"{rng.randint(0, 10**16 - 1):016d}", 16),
        _text(rng.choice(["NYC01", "LON02", "FRA3"]), 6),
        _text(" ".join(rng.sample(words, 3)), 30),
        _zoned(rng.randint(19700101, 20991231), 8, False),
        _zoned(rng.randint(0, 235959), 6, False),
        _packed(signed(13), 13),
        _packed(signed(7), 7),
        _packed(signed(15), 15),
        _packed(signed(9), 9),
        _packed(signed(7), 7),
        rng.randint(-9999, 9999).to_bytes(2, "big", signed=True),
        rng.randint(0, 999_999_999).to_bytes(4, "big"),
        rng.randint(-(10**18 - 1), 10**18 - 1).to_bytes(8, "big", signed=True),
        _text(rng.choice(["EUR", "USD", "GBP"]), 3),
        _text(rng.choice(["OK", "PE", ""]), 2),
        _zoned(signed(5), 5, True),
        _zoned(signed(9), 9, True),
        _zoned(rng.randint(0, 10**7 - 1), 7, False),
        _text(rng.choice(["", "REFUND", "MONTHLY FEE", "TRANSFER TO SAVINGS"]), 20),
    ])


def main() -> None:
    """Make the file, read it a few times, print records/s (best run)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rdw", action="store_true", help="variable-length records (4-byte RDW each)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rng = random.Random(8)
        distinct = [_record(rng) for _ in range(4096)]
        length = len(distinct[0])
        data = Path(tmp) / "txn.dat"
        if args.rdw:
            distinct = [(length + 4).to_bytes(2, "big") + b"\0\0" + r for r in distinct]
        block = b"".join(distinct)
        with open(data, "wb") as out:
            for start in range(0, args.records, len(distinct)):
                out.write(block[: (min(len(distinct), args.records - start)) * len(distinct[0])])
        (Path(tmp) / "txn.cpy").write_text(COPYBOOK)

        config = CobolConfig(path=str(data), copybook=str(Path(tmp) / "txn.cpy"), batch_rows=args.batch_rows,
                             split_mb=1e6, record_format="rdw" if args.rdw else "fixed")
        ctx = Context(job="bench", run_id="bench", plugin="cobol", logger=logging.getLogger("bench"))
        reader = CobolReader(config, ctx)
        dataset = reader.discover()[0]
        fields = len(dataset.schema or ())
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows = 0
            for split in reader.plan(dataset, None):
                for batch in reader.read(split):
                    rows += batch.num_rows
            best = min(best, time.perf_counter() - started)
        assert rows == args.records, rows
        size_mb = data.stat().st_size / 1e6
        print(f"cobol reader: {rows:,} {'RDW' if args.rdw else 'fixed-length'} records × {fields} fields "
              f"({length} bytes each, {size_mb:.0f} MB), batch_rows {args.batch_rows}, one thread")
        print(f"best of {args.repeat}: {best:.3f} s = {rows / best:,.0f} records/s ({size_mb / best:,.0f} MB/s)")


if __name__ == "__main__":
    main()
