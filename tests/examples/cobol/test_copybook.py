"""Copybook clauses beyond plain fields: OCCURS DEPENDING ON, floats, PIC P, NATIONAL, and the defects fixed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from dativo_cobol import parse_copybook

from dativo.errors import ConfigError, PluginFailed
from tests.examples.cobol.encoder import ibm_float, national, packed, rdw, text, zoned
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
