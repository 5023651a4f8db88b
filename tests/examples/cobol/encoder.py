"""An encoder of mainframe records written for the tests, independent of the plugin (it imports nothing of it)."""

from __future__ import annotations

import math
from decimal import Decimal

CP = "cp037"


def text(value: str, size: int, cp: str = CP) -> bytes:
    """PIC X(size), padded with spaces."""
    return value.ljust(size).encode(cp)[:size]


def zoned(value: int, digits: int, signed: bool = True) -> bytes:
    """EBCDIC zoned decimal: digits F0-F9, sign overpunched on the last digit (C+/D-)."""
    out = bytearray(0xF0 + int(c) for c in str(abs(value)).rjust(digits, "0"))
    if signed:
        out[-1] = (0xD0 if value < 0 else 0xC0) + (out[-1] - 0xF0)
    return bytes(out)


def ascii_zoned(value: int, digits: int, signed: bool = True) -> bytes:
    """ASCII DISPLAY number: digits 0-9, sign overpunched on the last digit ({A-I positive, }J-R negative)."""
    body = str(abs(value)).rjust(digits, "0")
    if not signed:
        return body.encode("ascii")
    last = int(body[-1])
    punch = ("}JKLMNOPQR" if value < 0 else "{ABCDEFGHI")[last]
    return (body[:-1] + punch).encode("ascii")


def leading_separate(value: int, digits: int) -> bytes:
    return (b"\x60" if value < 0 else b"\x4e") + zoned(abs(value), digits, signed=False)


def packed(value: int, digits: int, signed: bool = True) -> bytes:
    """Packed decimal: digits as nibbles (padded to an odd count), then the sign nibble (C/D, F if unsigned)."""
    nibbles = [int(c) for c in str(abs(value)).rjust(digits + (digits + 1) % 2, "0")]
    nibbles.append((0xD if value < 0 else 0xC) if signed else 0xF)
    return bytes(nibbles[i] * 16 + nibbles[i + 1] for i in range(0, len(nibbles), 2))


def binary(value: int, size: int, signed: bool = True) -> bytes:
    return value.to_bytes(size, "big", signed=signed)


def unscaled(value: Decimal, scale: int) -> int:
    return int(value.scaleb(scale))


def ibm_float(value: float, size: int) -> bytes:
    """IBM hexadecimal floating point (COMP-1: 4 bytes, COMP-2: 8 bytes), by long division in base 16."""
    if value == 0:
        return bytes(size)
    sign = 0x80 if value < 0 else 0
    magnitude = Decimal(abs(value))
    exponent = 0
    while magnitude >= 1:
        magnitude /= 16
        exponent += 1
    while magnitude < Decimal(1) / 16:
        magnitude *= 16
        exponent -= 1
    bits = 8 * size - 8
    fraction = int((magnitude * (1 << bits)).to_integral_value())
    if fraction >> bits:  # rounding carried into a new hex digit
        fraction >>= 4
        exponent += 1
    assert -64 <= exponent < 64 and not math.isinf(value)
    return bytes([sign | (exponent + 64)]) + fraction.to_bytes(size - 1, "big")


def rdw(record: bytes, big_endian: bool = True, includes_header: bool = True) -> bytes:
    """A record after its record descriptor word."""
    length = len(record) + (4 if includes_header else 0)
    word = length.to_bytes(2, "big") + b"\x00\x00"
    return (word if big_endian else word[::-1]) + record


def spanned(record: bytes, most: int) -> list[bytes]:
    """A record as the segments of a spanned file (RECFM=VS): each at most ``most`` payload bytes, after a
    segment descriptor word whose third byte says whole (0), first (1), last (2) or middle (3)."""
    parts = [record[i: i + most] for i in range(0, len(record), most)] or [b""]
    codes = [0] if len(parts) == 1 else [1, *[3] * (len(parts) - 2), 2]
    return [(len(p) + 4).to_bytes(2, "big") + bytes([c, 0]) + p for p, c in zip(parts, codes)]


def spanned_blocks(records: list[bytes], block_size: int) -> bytes:
    """Records in BDW blocks of at most ``block_size`` bytes, spanning blocks where they do not fit (VBS)."""
    blocks, block = [], b""
    for payload in records:
        rest = payload
        first = True
        while True:
            room = block_size - 4 - len(block) - 4
            if room <= 0 or (room < len(rest) and room < 8):
                blocks.append(block)
                block = b""
                continue
            piece, rest = rest[:room], rest[room:]
            code = (0 if not rest else 1) if first else (2 if not rest else 3)
            block += (len(piece) + 4).to_bytes(2, "big") + bytes([code, 0]) + piece
            first = False
            if not rest:
                break
    if block:
        blocks.append(block)
    return b"".join(bdw(b) for b in blocks)


def bdw(block: bytes) -> bytes:
    """A block after its block descriptor word (length includes the BDW)."""
    return (len(block) + 4).to_bytes(2, "big") + b"\x00\x00" + block


def national(value: str, chars: int) -> bytes:
    """PIC N(chars): UTF-16 big-endian, padded with spaces."""
    return value.ljust(chars).encode("utf-16-be")[: 2 * chars]
