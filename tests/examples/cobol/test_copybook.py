"""Copybook clauses beyond plain fields: OCCURS DEPENDING ON, floats, PIC P, NATIONAL, and the defects fixed."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from dativo_cobol import decoder, parse_copybook

from dativo.errors import ConfigError, PluginFailed
from tests.examples.cobol.encoder import binary, ibm_float, national, packed, rdw, text, zoned
from tests.examples.cobol.harness import read

ODO = """\
       01  R.
           05  N        PIC 9.
           05  T        OCCURS 0 TO 3 TIMES DEPENDING ON N.
               10  V    PIC S9(3) COMP-3.
           05  TAIL     PIC X(2).
"""
COUNTS = [0, 2, 3, 1]
EXPECTED = [{"n": n, "t": [{"v": i * 10 + k} for k in range(n)], "tail": f"Z{n}"} for i, n in enumerate(COUNTS)]


def odo_record(i: int, n: int, room: bool) -> bytes:
    return (zoned(n, 1, False) + b"".join(packed(i % 90 * 10 + k, 3) for k in range(n))
            + (b"\xff\xff" * (3 - n) if room else b"") + text(f"Z{n}", 2))


def test_a_ctrl_z_at_the_end_of_the_copybook_is_ignored() -> None:
    assert parse_copybook("01 R.\n  05 A PIC X(3).\n\x1a").schema.names == ["a"]


def test_occurs_depending_on_with_room_for_the_largest_count(tmp_path: Path) -> None:
    data = b"".join(odo_record(i, n, room=True) for i, n in enumerate(COUNTS))  # unused entries: bad bytes
    table = read(tmp_path, data, ODO)
    assert table.schema.field("t").type == pa.list_(pa.struct([("v", pa.int16())]))
    assert table.to_pylist() == EXPECTED


@pytest.mark.parametrize("fmt", ["F", "V"])
def test_variable_size_occurs_moves_later_fields_up(tmp_path: Path, fmt: str) -> None:
    records = [odo_record(i, n, room=False) for i, n in enumerate(COUNTS * 50)]
    data = b"".join(rdw(r) if fmt == "V" else r for r in records)
    table = read(tmp_path, data, ODO, record_format=fmt, variable_size_occurs=True, batch_rows=37)
    expected = [{"n": n, "t": [{"v": i % 90 * 10 + k} for k in range(n)], "tail": f"Z{n}"}
                for i, n in enumerate(COUNTS * 50)]
    assert table.to_pylist() == expected


def test_a_count_beyond_the_table_is_an_invalid_record(tmp_path: Path) -> None:
    data = odo_record(0, 2, True) + zoned(7, 1, False) + b"\x00" * 8
    with pytest.raises(PluginFailed, match=r"record 2 .*field N .* not a valid count for T \(OCCURS 0 TO 3\)"):
        read(tmp_path, data, ODO)
    rows = read(tmp_path, data, ODO, on_invalid_number="null").to_pylist()
    assert rows[1]["n"] == 7 and rows[1]["t"] == [{"v": None}] * 3  # clipped to the table; X'00' is null


def test_nested_occurs_depending_on(tmp_path: Path) -> None:
    copybook = """\
       01  R.
           05  GROUPS      PIC 9.
           05  G  OCCURS 1 TO 2 DEPENDING ON GROUPS.
               10  ITEMS   PIC 9.
               10  I  OCCURS 0 TO 2 DEPENDING ON ITEMS  PIC X(2).
    """
    data = (zoned(2, 1, False) + zoned(1, 1, False) + text("AB", 2) + text("??", 2) + zoned(2, 1, False)
            + text("CD", 2) + text("EF", 2))
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"groups": 2, "g": [{"items": 1, "i": ["AB"]}, {"items": 2, "i": ["CD", "EF"]}]}]


def test_floating_point_ibm_and_ieee(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 A COMP-1.\n  05 B COMP-2.\n  05 C USAGE IS COMPUTATIONAL-2.\n"
    values = [(-118.625, 3.141592653589793, 0.0), (1e-70, -7.2e75, 1 / 3)]
    data = b"".join(ibm_float(a, 4) + ibm_float(b, 8) + ibm_float(c, 8) for a, b, c in values)
    rows = read(tmp_path, data, copybook).to_pylist()
    assert rows[0] == {"a": -118.625, "b": 3.141592653589793, "c": 0.0}
    assert rows[1]["a"] == pytest.approx(1e-70, rel=1e-6) and rows[1]["b"] == pytest.approx(-7.2e75, rel=1e-15)
    assert rows[1]["c"] == 1 / 3
    import struct
    ieee = struct.pack(">f", 1.5) + struct.pack(">d", -2.25) + struct.pack(">d", 1e300)
    table = read(tmp_path, ieee, copybook, floating_point_format="IEEE754")
    assert table.schema.field("a").type == pa.float32()
    assert table.to_pylist() == [{"a": 1.5, "b": -2.25, "c": 1e300}]


def test_scaling_positions_p(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 HUNDREDS PIC 9(2)PP.\n  05 SMALL PIC SVPP9(2) COMP-3.\n  05 TINY PIC PPP9.\n"
    layout = parse_copybook(copybook)
    assert [f.type for f in layout.schema] == [pa.int16(), pa.decimal128(4, 4), pa.decimal128(4, 4)]
    data = zoned(12, 2, False) + packed(-45, 2) + zoned(7, 1, False)
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"hundreds": 1200, "small": Decimal("-0.0045"), "tiny": Decimal("0.0007")}]


def test_national_fields(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 NAME PIC N(4) USAGE NATIONAL.\n  05 CITY PIC N(3).\n"
    data = national("Zü€", 4) + national("東京", 3) + national("A", 4) + "𝄞".encode("utf-16-be") + national("", 1)
    assert read(tmp_path, data, copybook).to_pylist() == [{"name": "Zü€", "city": "東京"},
                                                          {"name": "A", "city": "𝄞"}]


def test_a_filler_first_layout_does_not_hide_its_redefinition(tmp_path: Path) -> None:
    copybook = ("01 R.\n  05 F.\n    10 FILLER PIC X(7).\n  05 C REDEFINES F.\n    10 FIRST-NAME PIC X(6).\n"
                "  05 AGE PIC 9(2).\n")
    assert read(tmp_path, text("ALICE", 7) + zoned(30, 2, False), copybook).to_pylist() == [
        {"c": {"first_name": "ALICE"}, "age": 30}]


def test_comp_usage_with_a_picture_is_refused() -> None:
    with pytest.raises(ConfigError, match="line 2: A: USAGE NATIONAL is read for PIC N"):
        parse_copybook("01 R.\n  05 A PIC 9(3) NATIONAL.\n")


EDITED = """\
       01  R.
           05  POINT        PIC S9(3).99.
           05  PLUS         PIC +9(5).
           05  MINUS-AFTER  PIC 9(5)-.
           05  SUPPRESSED   PIC Z(4)9-.
           05  IMPLIED      PIC Z(4)VZZ-.
           05  REPORTED     PIC ZZ,ZZ9.99CR.
           05  DOLLARS      PIC $$$,$$9.99.
           05  PROTECTED    PIC ***,**9.99DB.
           05  FLOATING     PIC ++++9.
           05  SLASHED      PIC 99/99/99.
"""


def edited_record(point: bytes, values: list[str]) -> bytes:
    """``point``, then each value as a report shows it, in cp037 (widths: the pictures' character positions)."""
    widths = [6, 6, 6, 7, 11, 10, 12, 5, 8]
    return point + b"".join(text(v.rjust(w), w) for v, w in zip(values, widths, strict=True))


def test_numeric_edited_pictures_read_as_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read over the whole batch: not one value goes through the value-by-value parser."""
    one_by_one = []
    monkeypatch.setattr(decoder, "_parse_display", lambda *args: one_by_one.append(args) or None)
    layout = parse_copybook(EDITED)
    assert [f.type for f in layout.schema] == [
        pa.decimal128(5, 2), pa.int32(), pa.int32(), pa.int32(), pa.decimal128(6, 2), pa.decimal128(7, 2),
        pa.decimal128(7, 2), pa.decimal128(8, 2), pa.int16(), pa.string()]
    assert layout.length == 77
    minus_overpunch = text("12", 2) + bytes([0xF3]) + text(".4", 2) + bytes([0xD5])  # -123.45, sign on the 5
    rows = [
        edited_record(text("123.45", 6), ["+00042", "00042 ", "   42-", "  1234 ", "12,345.67CR", "$12,345.67",
                                           "***123.45DB", "  +12", "31/12/99"]),
        edited_record(minus_overpunch, ["-00042", "00042-", "    0 ", " 12345-", "     0.05  ", "     $0.99",
                                         "*12,345.00  ", "-1234", "01/01/00"]),
        edited_record(text("000.00", 6), ["+00000", "00000 ", "      ", "       ", "           ", "          ",
                                           "************", "     ", "        "]),
        edited_record(text("1.5", 6), ["+7", "7", "7", "7", "7.77", "7", "7", "7", "7"]).replace(b"\x40", b"\x00"),
    ]
    table = read(tmp_path, b"".join(rows), EDITED, on_invalid_number="fail")
    assert table.to_pylist() == [
        {"point": Decimal("123.45"), "plus": 42, "minus_after": 42, "suppressed": -42, "implied": Decimal("12.34"),
         "reported": Decimal("-12345.67"), "dollars": Decimal("12345.67"), "protected": Decimal("-123.45"),
         "floating": 12, "slashed": "31/12/99"},
        {"point": Decimal("-123.45"), "plus": -42, "minus_after": -42, "suppressed": 0,
         "implied": Decimal("-123.45"), "reported": Decimal("0.05"), "dollars": Decimal("0.99"),
         "protected": Decimal("12345.00"), "floating": -1234, "slashed": "01/01/00"},
        {"point": Decimal("0.00"), "plus": 0, "minus_after": 0, "suppressed": None, "implied": None,
         "reported": None, "dollars": None, "protected": None, "floating": None, "slashed": ""},
        {"point": Decimal("1.50"), "plus": 7, "minus_after": 7, "suppressed": 7, "implied": Decimal("0.07"),
         "reported": Decimal("7.77"), "dollars": Decimal("0.07"), "protected": Decimal("0.07"), "floating": 7,
         "slashed": "\x00" * 7 + "7"},  # digits without their point are unscaled, as in DISPLAY fields
    ]
    assert not one_by_one


@pytest.mark.parametrize(("picture", "shown", "why"), [
    ("9(3).99", "-12.00", "no sign in its picture"),
    ("Z(3).99", "12.345", "three decimals for two"),
    ("+9(4)", "+12A4", "a letter"),
    ("Z(4)9", "1 234", "a space between digits"),
])
def test_a_numeric_edited_value_that_its_picture_cannot_show_is_invalid(
        tmp_path: Path, picture: str, shown: str, why: str) -> None:
    copybook = f"01 R.\n  05 N PIC {picture}.\n"
    size = parse_copybook(copybook).length
    with pytest.raises(PluginFailed, match=rf"numeric-edited number \(PIC {re.escape(picture)}\)"):
        read(tmp_path, text(shown.rjust(size), size), copybook, on_invalid_number="fail")
    assert read(tmp_path, text(shown.rjust(size), size), copybook, on_invalid_number="null").to_pylist() == [
        {"n": None}], why


def test_numeric_edited_numbers_in_an_ascii_text_file(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 A PIC -9(5).99.\n  05 B PIC ZZ,ZZ9.99CR.\n  05 C PIC S9(3).99.\n"
    data = b"-01234.56 1,234.56CR123.4N\r\n 00001.00     0.10  123.45\n"  # N: 5 overpunched negative
    assert read(tmp_path, data, copybook, record_format="D", encoding="ascii").to_pylist() == [
        {"a": Decimal("-1234.56"), "b": Decimal("-1234.56"), "c": Decimal("-123.45")},
        {"a": Decimal("1.00"), "b": Decimal("0.10"), "c": Decimal("123.45")}]


def test_scaling_positions_p_on_binary_fields(tmp_path: Path) -> None:
    """P on COMP: the stored integer scaled (types sized by the bytes, as every binary field)."""
    copybook = ("01 R.\n  05 TINY PIC SPPP9 COMP.\n  05 THOUSANDS PIC S9(3)PPP COMP.\n"
                "  05 HUNDREDS PIC 9(5)PP COMP.\n  05 HUGE PIC S9(10)PPP COMP.\n  05 RATE PIC SVPP9(5) COMP.\n")
    layout = parse_copybook(copybook)
    assert [f.type for f in layout.schema] == [pa.decimal128(5, 4), pa.int64(), pa.int64(), pa.decimal128(22, 0),
                                               pa.decimal128(10, 7)]
    data = b"".join([binary(-7, 2), binary(-123, 2), binary(12345, 4, signed=False),
                     binary(-1_234_567_890_123, 8), binary(98765, 4)])
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"tiny": Decimal("-0.0007"), "thousands": -123_000, "hundreds": 1_234_500,
         "huge": Decimal(-1_234_567_890_123_000), "rate": Decimal("0.0098765")}]


def test_a_numeric_edited_amount_in_the_code_pages_own_currency(tmp_path: Path) -> None:
    """cp285 (UK) spells the picture's currency sign as £ (X'5B'): it is shown, not part of the number."""
    copybook = "01 R.\n  05 AMOUNT PIC $$,$$9.99CR.\n"
    # X'5B' is $ in cp037 and £ in cp285 (Python has no cp285 codec; the other characters are the same)
    data = b"".join(text(v.rjust(11), 11) for v in ["$1,234.50CR", "    $0.99  "])
    assert data[0] == 0x5B
    assert read(tmp_path, data, copybook, encoding="cp285").to_pylist() == [
        {"amount": Decimal("-1234.50")}, {"amount": Decimal("0.99")}]


def test_display_and_packed_numbers_of_up_to_38_digits(tmp_path: Path) -> None:
    """Cobrix reads PIC 9(37) and the like; Arrow's decimal128 holds 38 digits, so does the reader."""
    copybook = ("01 R.\n  05 Z38 PIC S9(36)V99.\n  05 P38 PIC S9(38) COMP-3.\n  05 P37 PIC 9(37) COMP-3.\n"
                "  05 Z32 PIC 9(32).\n")
    layout = parse_copybook(copybook)
    assert [f.type for f in layout.schema] == [pa.decimal128(38, 2), pa.decimal128(38, 0), pa.decimal128(37, 0),
                                               pa.decimal128(32, 0)]
    top = 10**38 - 1
    rows = [(-top, top, 10**37 - 1, 10**32 - 1), (top, -top, 0, 0), (-1, 1, 12345678901234567890123456789012345, 7),
            (-(10**37 + 987654321), -(10**20 + 5), 10**36, 10**31)]
    data = b"".join(zoned(a, 38) + packed(b, 38) + packed(c, 37, False) + zoned(d, 32, False) for a, b, c, d in rows)
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"z38": Decimal(f"{a}E-2"), "p38": Decimal(b), "p37": Decimal(c), "z32": Decimal(d)}
        for a, b, c, d in rows]


def test_an_even_packed_field_past_its_digits_is_invalid(tmp_path: Path) -> None:
    """PIC 9(38) COMP-3 leaves one pad nibble in its 20 bytes: a 39th digit there is not a value of the PIC."""
    copybook = "01 R.\n  05 P PIC S9(38) COMP-3.\n"
    data = packed(10**38, 39) + packed(5, 38)
    assert read(tmp_path, data, copybook, on_invalid_number="null").to_pylist() == [{"p": None}, {"p": Decimal(5)}]
    with pytest.raises(PluginFailed, match=r"record 1 \(at byte 0\): field P .*not a valid packed decimal"):
        read(tmp_path, data, copybook)


def test_binary_past_18_digits_in_the_sizes_cobrix_reads(tmp_path: Path) -> None:
    """COMP of 19-38 digits: the fewest bytes that hold them (9 … 16), typed by what the bytes hold."""
    sizes = {19: 9, 21: 9, 22: 10, 24: 11, 27: 12, 29: 13, 32: 14, 34: 15, 36: 16, 38: 16}
    copybook = "01 R.\n" + "".join(f"  05 S{d} PIC S9({d}) COMP.\n  05 U{d} PIC 9({d}) COMP-5.\n" for d in sizes)
    layout = parse_copybook(copybook)
    assert layout.length == 2 * sum(sizes.values())
    held = {n: (len(str(2 ** (8 * n - 1) - 1)), len(str(2 ** (8 * n) - 1))) for n in sizes.values()}
    assert [f.type for f in layout.schema] == [
        pa.decimal128(min(38, held[sizes[d]][unsigned]), 0) for d in sizes for unsigned in (0, 1)]
    extremes = []
    for n in sizes.values():  # the most and least the bytes hold, within 38 digits
        most = min(2 ** (8 * n - 1) - 1, 10**38 - 1)
        extremes.append(((-most - (1 if n < 16 else 0), 2 ** (8 * n) - 1 if n < 16 else 10**38 - 1),
                         (most, 0), (-1, 1)))
    for row in range(3):
        data = b"".join(binary(extremes[i][row][0], n) + binary(extremes[i][row][1], n, signed=False)
                        for i, n in enumerate(sizes.values()))
        values = list(read(tmp_path, data, copybook).to_pylist()[0].values())
        assert values == [Decimal(v) for i in range(len(sizes)) for v in extremes[i][row]]


def test_a_16_byte_binary_past_38_digits_is_invalid(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 S PIC S9(38) COMP.\n  05 U PIC 9(37) COMP.\n  05 K PIC X.\n"
    rows = [(10**38, 10**38 - 1), (-(10**38), 2**128 - 1), (-(2**127), 0), (10**38 - 1, 2**127)]
    data = b"".join(binary(s, 16) + binary(u, 16, signed=False) + text("K", 1) for s, u in rows)
    assert read(tmp_path, data, copybook, on_invalid_number="null").to_pylist() == [
        {"s": None, "u": Decimal(10**38 - 1), "k": "K"}, {"s": None, "u": None, "k": "K"},
        {"s": None, "u": Decimal(0), "k": "K"}, {"s": Decimal(10**38 - 1), "u": None, "k": "K"}]
    with pytest.raises(PluginFailed, match=r"record 1 \(at byte 0\): field S .*not a valid binary number of at most"):
        read(tmp_path, data, copybook)


def test_scaling_positions_p_past_18_digits(tmp_path: Path) -> None:
    copybook = ("01 R.\n  05 D PIC S9(17)P(4).\n  05 C PIC 9(25)PPP COMP-3.\n  05 B PIC S9(20)P(16) COMP.\n"
                "  05 E PIC S9(18)PP COMP.\n")
    layout = parse_copybook(copybook)
    assert [f.type for f in layout.schema] == [pa.decimal128(21, 0), pa.decimal128(28, 0), pa.decimal128(38, 0),
                                               pa.decimal128(21, 0)]
    data = (zoned(-(10**17 - 1), 17) + packed(10**25 - 1, 25, False) + binary(-(10**20 - 1), 9)
            + binary(-(2**63), 8))
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"d": Decimal(-(10**17 - 1) * 10**4), "c": Decimal((10**25 - 1) * 1000),
         "b": Decimal(-(10**20 - 1) * 10**16), "e": Decimal(-(2**63) * 100)}]


@pytest.mark.parametrize("picture", ["9(39)", "S9(30)V9(9) COMP-3", "9(39) COMP", "-9(36).999", "9(36)PPP"])
def test_more_than_38_digits_are_refused(picture: str) -> None:
    with pytest.raises(ConfigError, match=r"line 2: PIC .* of A\b.*38 .*decimal128"):
        parse_copybook(f"01 R.\n  05 A PIC {picture}.\n")
