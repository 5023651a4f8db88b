"""The null rules of real data and the on_invalid_number policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dativo.errors import PluginFailed
from tests.examples.cobol.encoder import packed, rdw, text, zoned
from tests.examples.cobol.harness import make_reader, read, read_all

COPYBOOK = """\
       01  R.
           05  CODE    PIC X(4).
           05  QTY     PIC 9(4).
           05  AMT     PIC S9(5)V99 COMP-3.
           05  SIGNED  PIC S9(4).
           05  NOTE    PIC X(6).
"""


def test_low_values_and_padding(tmp_path: Path) -> None:
    rows = [
        b"\x00" * 4 + b"\x00" * 4 + b"\x00" * 4 + b"\x00" * 4 + text("AB", 4) + b"\x00\x00",  # low-values
        text("X", 4) + text("  12", 4) + b"\x40" * 4 + text("", 4) + b"\x00" + text("CD", 5),  # spaces, X'00'
        text("Y", 4) + text("12", 4) + packed(-5, 7) + b"\x40\x40" + zoned(-7, 2) + text("EF", 6),  # padded right
        text("Z", 4) + b"\x00\x00" + zoned(3, 2, False) + packed(5, 7) + zoned(12, 4) + text("", 6),
    ]
    table = read(tmp_path, b"".join(rows), COPYBOOK)
    from decimal import Decimal
    assert table.to_pylist() == [
        {"code": None, "qty": None, "amt": None, "signed": None, "note": "AB"},
        {"code": "X", "qty": 12, "amt": None, "signed": None, "note": "\x00CD"},
        {"code": "Y", "qty": 12, "amt": Decimal("-0.05"), "signed": -7, "note": "EF"},
        {"code": "Z", "qty": 3, "amt": Decimal("0.05"), "signed": 12, "note": ""},
    ]
    both = read(tmp_path, b"".join(rows), COPYBOOK, trim="both")
    assert both.column("note").to_pylist()[1] == "CD"
    kept = read(tmp_path, b"".join(rows), COPYBOOK, trim="none")
    assert kept.column("code").to_pylist()[0] == "\x00" * 4


def test_a_field_cut_off_by_the_record_end_holds_what_is_there(tmp_path: Path) -> None:
    full = text("ABCD", 4) + zoned(1234, 4, False) + packed(1, 7) + zoned(5, 4) + text("HELLO", 6)
    data = rdw(full[:21]) + rdw(full[:18]) + rdw(full[:6]) + rdw(full[:10])
    rows = read(tmp_path, data, COPYBOOK, record_format="V").to_pylist()
    assert [r["note"] for r in rows] == ["HELLO", "HE", None, None]
    assert rows[1]["signed"] == 5
    assert rows[2]["qty"] == 12 and rows[2]["amt"] is None  # '12' then the record ends
    assert rows[3]["amt"] is None  # a packed number cut short is absent, not a wrong value


def bad_data() -> bytes:
    good = text("OK", 4) + zoned(1, 4, False) + packed(1, 7) + zoned(1, 4) + text("", 6)
    bad = text("BAD", 4) + text("12X4", 4) + packed(2, 7) + zoned(2, 4) + text("", 6)
    return good + bad + good


def test_invalid_numbers_fail_by_default(tmp_path: Path) -> None:
    with pytest.raises(PluginFailed, match=r"record 2 \(at byte 22\): field QTY .* holds X'F1F2E7F4'"):
        read(tmp_path, bad_data(), COPYBOOK)


def test_invalid_numbers_as_null_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reader = make_reader(tmp_path, bad_data(), COPYBOOK, on_invalid_number="null")
    with caplog.at_level(logging.WARNING):
        table = next(iter(read_all(reader).values()))
    assert table.column("qty").to_pylist() == [1, None, 1]
    assert table.column("code").to_pylist() == ["OK", "BAD", "OK"]  # the record is kept
    assert reader.invalid_numbers == {"QTY": 1}
    assert "1 invalid values of QTY read as null" in caplog.text


def test_invalid_numbers_reject_the_record(tmp_path: Path) -> None:
    reject = tmp_path / "rejects.dat"
    table = read(tmp_path, bad_data(), COPYBOOK, on_invalid_number="reject_record", reject_path=str(reject))
    assert table.column("code").to_pylist() == ["OK", "OK"]
    assert reject.read_bytes() == bad_data()[22:44]


def test_ascii_numbers_with_explicit_signs_and_points(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 A PIC S9(3)V99.\n  05 B PIC S9(4).\n  05 C PIC 9(4).\n"
    lines = [b"-1.5 +12 0042", b" 2.25 -7   12", b"12345999}0000"]
    rows = read(tmp_path, b"\n".join(lines), copybook, record_format="D", encoding="ascii").to_pylist()
    assert [(str(r["a"]), r["b"], r["c"]) for r in rows] == [("-1.50", 12, 42), ("2.25", -7, 12),
                                                            ("123.45", -9990, 0)]
