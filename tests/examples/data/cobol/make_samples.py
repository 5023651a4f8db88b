"""Write the record-format samples of the ``cobol`` reader's tests: one statement extract in each format.

    python tests/examples/data/cobol/make_samples.py

Deterministic. Uses the tests' own encoder (tests/examples/cobol/encoder.py), never the plugin. Each file holds
the same 3 accounts × (1 header + 4 details), laid out by ``statement.cpy`` (44-byte records).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

from tests.examples.cobol.encoder import (  # noqa: E402
    ascii_zoned, bdw, binary, packed, rdw, spanned, spanned_blocks, text, zoned,
)

ACCOUNTS = [("DE0012345678", 1021, 1_250_000, "MUELLER HANS"), ("GB0098765432", 7, -4_210, "O'NEILL SIOBHAN"),
            ("CH0055501234", 3300, 99_999_999_99, "ZUERCHER KANTONAL")]


def rows() -> list[tuple[str, tuple[object, ...]]]:
    """(segment, values) of every record, in file order."""
    out: list[tuple[str, tuple[object, ...]]] = []
    for a, (account, branch, balance, name) in enumerate(ACCOUNTS):
        out.append(("H", (account, branch, balance, name)))
        for d in range(4):
            out.append(("D", (20240101 + a * 100 + d, (d - 2) * 12_345 + a, 1000 + d, f"TRANSFER {a}{d}")))
    return out


def ebcdic(segment: str, values: tuple[object, ...]) -> bytes:
    if segment == "H":
        account, branch, balance, name = values
        return text("H", 1) + text(str(account), 12) + zoned(int(str(branch)), 4, False) + packed(int(str(balance)), 13) + text(str(name), 20)
    date, amount, code, memo = values
    return (text("D", 1) + zoned(int(str(date)), 8, False) + packed(int(str(amount)), 11) + binary(int(str(code)), 2)
            + text(str(memo), 16) + b"\x00" * 11)


def ascii_line(segment: str, values: tuple[object, ...]) -> bytes:
    """The same record as an ASCII text line: DISPLAY numbers instead of COMP-3 and COMP (statement_ascii.cpy)."""
    if segment == "H":
        account, branch, balance, name = values
        return (b"H" + text(str(account), 12, "ascii") + ascii_zoned(int(str(branch)), 4, False)
                + ascii_zoned(int(str(balance)), 13) + text(str(name), 20, "ascii").rstrip())
    date, amount, code, memo = values
    return (b"D" + ascii_zoned(int(str(date)), 8, False) + ascii_zoned(int(str(amount)), 11)
            + ascii_zoned(int(str(code)), 4) + text(str(memo), 16, "ascii").rstrip())


ASCII_COPYBOOK = """\
       01  STMT-REC.
           05  REC-TYPE              PIC X.
           05  HEADER-DATA.
               10  ACCOUNT-NO        PIC X(12).
               10  BRANCH            PIC 9(4).
               10  OPENING-BALANCE   PIC S9(11)V99.
               10  HOLDER-NAME       PIC X(20).
           05  DETAIL-DATA REDEFINES HEADER-DATA.
               10  TXN-DATE          PIC 9(8).
               10  TXN-AMOUNT        PIC S9(9)V99.
               10  TXN-CODE          PIC S9(4).
               10  MEMO              PIC X(16).
"""


def samples() -> dict[str, bytes]:
    """File name → content."""
    records = [ebcdic(s, v) for s, v in rows()]
    blocks = [records[i: i + 4] for i in range(0, len(records), 4)]
    return {
        "statement_f.dat": b"".join(records),
        "statement_fb.dat": b"".join(bdw(b"".join(b)) for b in blocks),
        "statement_v.dat": b"".join(rdw(r.rstrip(b"\x00")) for r in records),
        "statement_v_le.dat": b"".join(rdw(r, big_endian=False, includes_header=False) for r in records),
        "statement_vb.dat": b"".join(bdw(b"".join(rdw(r.rstrip(b"\x00")) for r in b)) for b in blocks),
        # spanned: a record in segments of at most 20 bytes; blocks of at most 64 bytes that records span
        "statement_vs.dat": b"".join(b"".join(spanned(r.rstrip(b"\x00"), 20)) for r in records),
        "statement_vbs.dat": spanned_blocks([r.rstrip(b"\x00") for r in records], 64),
        "statement_f_header.dat.gz": gzip.compress(text("HDR STATEMENTS 20240131", 80) + b"".join(records)
                                                   + text("TRL 15", 20), mtime=0),
        "statement_d.txt": b"\r\n".join(ascii_line(s, v) for s, v in rows()) + b"\r\n",
        "statement_ascii.cpy": ASCII_COPYBOOK.encode(),
    }


def main() -> None:
    for name, content in samples().items():
        (HERE / name).write_bytes(content)


if __name__ == "__main__":
    main()
