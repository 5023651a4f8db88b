"""Write ``accounts.dat``: 30 account records in EBCDIC laid out as ``accounts.cpy`` says.

    python examples/data/cobol/make_sample.py

Deterministic (same bytes every run). The encoders below are deliberately independent of the plugin.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE_PAGE = "cp037"


def text(value: str, size: int) -> bytes:
    """PIC X(size): EBCDIC, padded with spaces."""
    return value.ljust(size)[:size].encode(CODE_PAGE)


def zoned(value: int, digits: int, signed: bool = False) -> bytes:
    """PIC [S]9(digits) DISPLAY: one digit a byte (zone F), the sign overpunched on the last byte (C/D)."""
    data = bytearray(str(abs(value)).rjust(digits, "0").encode(CODE_PAGE))
    if signed:
        data[-1] = (0xD0 if value < 0 else 0xC0) | (data[-1] & 0x0F)
    return bytes(data)


def packed(value: int, digits: int) -> bytes:
    """PIC S9(digits) COMP-3: two digits a byte, sign nibble C or D last."""
    nibbles = str(abs(value)).rjust(digits + (1 - digits % 2), "0") + ("D" if value < 0 else "C")
    return bytes.fromhex(nibbles)


def binary(value: int, size: int) -> bytes:
    """PIC S9(n) COMP: big-endian two's complement."""
    return value.to_bytes(size, "big", signed=True)


def cents(amount: str) -> int:
    """The unscaled value of a decimal with 2 digits after the point."""
    return int(Decimal(amount) * 100)


NAMES = ["ADA LOVELACE", "ALAN TURING", "GRACE HOPPER", "JOHN VON NEUMANN", "EDSGER DIJKSTRA",
         "BARBARA LISKOV", "DONALD KNUTH", "KATHERINE JOHNSON", "TIM BERNERS-LEE", "LINUS TORVALDS"]
CITIES = ["LONDON", "NEW YORK", "FRANKFURT", "ZÜRICH", "SÃO PAULO"]


def record(i: int) -> bytes:
    """Account number ``i`` (1-based)."""
    balance = cents(f"{(i * 7919) % 1_000_000}.{i % 100:02d}") * (-1 if i % 7 == 0 else 1)
    return b"".join([
        zoned(1_000_000_000 + i, 10),
        text("CK" if i % 3 else "SV", 2),
        text(NAMES[i % len(NAMES)], 30),
        zoned(20000101 + (i % 12) * 100 + (i % 28), 8),
        binary(100 + i % 5, 2),
        packed(balance, 13),
        packed(cents("5000.00") * (1 + i % 4), 9),
        zoned(125 + i * 10, 5),  # 9V9(4): 0.0125 + i × 0.0010
        zoned(cents(f"{i * 13}.{i % 100:02d}") * (-1 if i % 2 else 1), 9, signed=True),
        *[packed(balance - m * 1000, 11) for m in range(3)],
        text(CITIES[i % len(CITIES)], 20),
        text(f"{10000 + i * 37}", 8),
        text(f"{i % 2}{i % 3}0{i % 5}", 4),
        text("", 6),
    ])


def main() -> None:
    """Write the sample file beside this script."""
    data = b"".join(record(i) for i in range(1, 31))
    assert len(data) == 30 * 134
    (HERE / "accounts.dat").write_bytes(data)
    print(f"wrote {HERE / 'accounts.dat'} ({len(data)} bytes, 30 records of 134 bytes)")


if __name__ == "__main__":
    main()
