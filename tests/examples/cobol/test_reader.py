"""The ``cobol`` reader plugin (examples/plugins/cobol_reader) on the layout of every field kind, through the CLI too.

The plugin must be installed (``make install`` does it): importing it at the top makes these tests fail, not
skip, when it is missing.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dativo_cobol import parse_copybook
from dativo_cobol.reader import CobolConfig, CobolReader
from pydantic import ValidationError

from dativo.api import Context
from dativo.errors import ConfigError, PluginFailed
from tests.conftest import Result
from tests.plugins import sandboxing
from tests.examples.cobol.encoder import binary, leading_separate, packed, rdw, text, unscaled, zoned

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

# Fixed format: sequence numbers in columns 1-6, comments marked in column 7.
COPYBOOK = """\
000100* Every kind of field the reader supports.
000200 01  TEST-REC.
000300     05  ID                PIC 9(4).
000400     05  NAME              PIC X(8).
000500     05  AMOUNT            PIC S9(7)V99 COMP-3.
000600     05  BIG-PACKED        PIC S9(18) COMP-3.
000700     05  EVEN-PACKED       PIC 9(4) COMP-3.
000800     05  COUNT-H           PIC S9(4) COMP.
000900     05  COUNT-F           PIC 9(9) COMP-5.
001000     05  COUNT-D           PIC S9(18) BINARY.
001100     05  RATE              PIC S9(3)V99 COMP.
001200     05  ZONED-S           PIC S9(5)V99.
001300     05  ZONED-U           PIC 9(3).
001400     05  ZONED-MAX         PIC S9(18).
001500     05  LEAD-SEP          PIC S9(3) SIGN IS LEADING SEPARATE.
001600     05  FILLER            PIC X(3).
001700     05  TAGS              PIC X(2) OCCURS 3 TIMES.
001800     05  LINES             OCCURS 2 TIMES.
001900         10  QTY           PIC S9(3) COMP-3.
002000         10  FILLER        PIC X.
002100         10  CODE          PIC X(2).
002200     05  KIND              PIC X(4).
002300     05  KIND-NUM          REDEFINES KIND PIC 9(4).
002400     05  HUGE              PIC S9(25)V99 COMP-3.
002500     05  OPTIONAL-NUM      PIC 9(3).
002600         88  NOTHING       VALUE ZERO.
"""

SCHEMA = pa.schema([
    ("id", pa.int16()),
    ("name", pa.string()),
    ("amount", pa.decimal128(9, 2)),
    ("big_packed", pa.int64()),
    ("even_packed", pa.int16()),
    ("count_h", pa.int16()),
    ("count_f", pa.int64()),
    ("count_d", pa.int64()),
    ("rate", pa.decimal128(10, 2)),
    ("zoned_s", pa.decimal128(7, 2)),
    ("zoned_u", pa.int16()),
    ("zoned_max", pa.int64()),
    ("lead_sep", pa.int16()),
    ("tags", pa.list_(pa.string())),
    ("lines", pa.list_(pa.struct([("qty", pa.int16()), ("code", pa.string())]))),
    ("kind", pa.string()),
    ("huge", pa.decimal128(27, 2)),
    ("optional_num", pa.int16()),
])

# --- an encoder written for the tests, independent of the plugin -------------------------------------------

def encode(row: dict[str, Any]) -> bytes:
    """One TEST-REC record from the expected (decoded) row."""
    optional = row["optional_num"]
    return b"".join([
        zoned(row["id"], 4, signed=False),
        text(row["name"], 8),
        packed(unscaled(row["amount"], 2), 9),
        packed(row["big_packed"], 18),
        packed(row["even_packed"], 4, signed=False),
        binary(row["count_h"], 2),
        binary(row["count_f"], 4, signed=False),
        binary(row["count_d"], 8),
        binary(unscaled(row["rate"], 2), 4),
        zoned(unscaled(row["zoned_s"], 2), 7),
        zoned(row["zoned_u"], 3, signed=False),
        zoned(row["zoned_max"], 18),
        leading_separate(row["lead_sep"], 3),
        b"\x00\xff\x13",  # FILLER: any bytes at all
        *[text(t, 2) for t in row["tags"]],
        *[packed(line["qty"], 3) + b"\xff" + text(line["code"], 2) for line in row["lines"]],
        text(row["kind"], 4),
        packed(unscaled(row["huge"], 2), 27),
        text("", 3) if optional is None else zoned(optional, 3, signed=False),
    ])


ROWS: list[dict[str, Any]] = [
    {  # ordinary positive values
        "id": 1, "name": "ALICE", "amount": Decimal("1234567.89"), "big_packed": 42, "even_packed": 1234,
        "count_h": 300, "count_f": 70000, "count_d": 1 << 40, "rate": Decimal("12.50"),
        "zoned_s": Decimal("123.45"), "zoned_u": 7, "zoned_max": 123456789012345678, "lead_sep": 12,
        "tags": ["AB", "C", ""], "lines": [{"qty": 5, "code": "XY"}, {"qty": 0, "code": ""}], "kind": "CHK",
        "huge": Decimal("12345678901234567890123.45"), "optional_num": 5,
    },
    {  # negatives
        "id": 2, "name": "BOB", "amount": Decimal("-0.01"), "big_packed": -7, "even_packed": 0,
        "count_h": -1, "count_f": 0, "count_d": -(1 << 50), "rate": Decimal("-21474836.48"),
        "zoned_s": Decimal("-99999.99"), "zoned_u": 0, "zoned_max": -1, "lead_sep": -999,
        "tags": ["X", "Y", "Z"], "lines": [{"qty": -12, "code": "A"}, {"qty": -999, "code": "B"}],
        "kind": "SAV", "huge": Decimal("-0.05"), "optional_num": None,
    },
    {  # zeros and spaces inside text
        "id": 0, "name": "  A B", "amount": Decimal("0.00"), "big_packed": 0, "even_packed": 0,
        "count_h": 0, "count_f": 0, "count_d": 0, "rate": Decimal("0.00"), "zoned_s": Decimal("0.00"),
        "zoned_u": 0, "zoned_max": 0, "lead_sep": 0, "tags": ["", "", ""],
        "lines": [{"qty": 0, "code": " Q"}, {"qty": 1, "code": "R"}], "kind": "", "huge": Decimal("0.00"),
        "optional_num": 0,
    },
    {  # the largest magnitudes each PIC allows
        "id": 9999, "name": "ÄÖÜ ÉÈ", "amount": Decimal("-9999999.99"), "big_packed": 999999999999999999,
        "even_packed": 9999, "count_h": 32767, "count_f": 4294967295, "count_d": -(2**63),
        "rate": Decimal("21474836.47"), "zoned_s": Decimal("99999.99"), "zoned_u": 999,
        "zoned_max": -999999999999999999, "lead_sep": 999, "tags": ["ZZ", "ZZ", "ZZ"],
        "lines": [{"qty": 999, "code": "ZZ"}, {"qty": -999, "code": "ZZ"}], "kind": "MAXI",
        "huge": Decimal("-9999999999999999999999999.99"), "optional_num": 999,
    },
]


# --- helpers --------------------------------------------------------------------------------------------


def read(tmp_path: Path, data: bytes, copybook: str = COPYBOOK, **options: Any) -> pa.Table:
    """Run the reader as the engine does (check, discover, plan, read every split) and collect the rows."""
    reader = make_reader(tmp_path, data, copybook, **options)
    reader.check()
    dataset = reader.discover()[0]
    batches = [b for split in reader.plan(dataset, None) for b in reader.read(split)]
    reader.close()
    assert dataset.schema is not None
    return pa.Table.from_batches(batches, schema=dataset.schema)


def make_reader(tmp_path: Path, data: bytes, copybook: str = COPYBOOK, **options: Any) -> CobolReader:
    (tmp_path / "test.cpy").write_text(copybook)
    (tmp_path / "test.dat").write_bytes(data)
    config = CobolConfig(path=str(tmp_path / "test.dat"), copybook=str(tmp_path / "test.cpy"), **options)
    ctx = Context(job="cobol_test", run_id="r1", plugin="cobol", logger=logging.getLogger("test.cobol"))
    return CobolReader(config, ctx)


def random_row(rng: random.Random, i: int) -> dict[str, Any]:
    def signed(digits: int) -> int:
        return rng.randint(-(10**digits - 1), 10**digits - 1)

    def word(size: int) -> str:
        return "".join(rng.choice("ABC XYZ019") for _ in range(rng.randint(0, size))).rstrip()

    return {
        "id": i % 10_000, "name": word(8), "amount": Decimal(signed(9)).scaleb(-2), "big_packed": signed(18),
        "even_packed": rng.randint(0, 9999), "count_h": rng.randint(-32768, 32767),
        "count_f": rng.randint(0, 2**32 - 1), "count_d": rng.randint(-(2**63), 2**63 - 1),
        "rate": Decimal(rng.randint(-(2**31), 2**31 - 1)).scaleb(-2), "zoned_s": Decimal(signed(7)).scaleb(-2),
        "zoned_u": rng.randint(0, 999), "zoned_max": signed(18), "lead_sep": signed(3),
        "tags": [word(2) for _ in range(3)], "lines": [{"qty": signed(3), "code": word(2)} for _ in range(2)],
        "kind": word(4), "huge": Decimal(signed(27)).scaleb(-2),
        "optional_num": None if i % 5 == 0 else rng.randint(0, 999),
    }


# --- the layout -----------------------------------------------------------------------------------------


def test_the_plugin_is_an_installed_entry_point(cli: Callable[..., Result]) -> None:
    rows = {(r["role"], r["name"]): r for r in json.loads(cli("plugins", "list", "--json").stdout)}
    assert rows[("reader", "cobol")]["status"] == "ok"
    assert rows[("reader", "cobol")]["origin"] == "entry point"


def test_copybook_gives_the_arrow_schema_and_record_length() -> None:
    layout = parse_copybook(COPYBOOK)
    assert layout.schema == SCHEMA
    assert layout.length == len(encode(ROWS[0])) == 120


def test_types_of_the_issue_example() -> None:
    layout = parse_copybook("01 R.\n  05 A PIC S9(7)V99 COMP-3.\n  05 B PIC 9(2).\n  05 C PIC 9(20).\n")
    assert layout.schema.field("a").type == pa.decimal128(9, 2)
    assert layout.schema.field("b").type == pa.int16()
    assert layout.schema.field("c").type == pa.decimal128(20, 0)


# --- decoding -------------------------------------------------------------------------------------------


def test_known_values_decode_exactly(tmp_path: Path) -> None:
    table = read(tmp_path, b"".join(encode(r) for r in ROWS))
    assert table.schema == SCHEMA
    assert table.to_pylist() == ROWS


def test_trailing_spaces_are_kept_without_trim(tmp_path: Path) -> None:
    table = read(tmp_path, b"".join(encode(r) for r in ROWS), trim=False)
    assert table.column("name").to_pylist() == ["ALICE   ", "BOB     ", "  A B   ", "ÄÖÜ ÉÈ  "]
    assert table.column("tags").to_pylist()[0] == ["AB", "C ", "  "]


def test_another_code_page(tmp_path: Path) -> None:
    record = encode(ROWS[0])
    record = record[:4] + "€URO".ljust(8).encode("cp1140") + record[12:]
    assert read(tmp_path, record, encoding="cp1140").column("name").to_pylist() == ["€URO"]


def test_a_redefines_alternative_can_be_picked(tmp_path: Path) -> None:
    row = {**ROWS[0], "kind": "0042"}
    table = read(tmp_path, encode(row), redefines=["KIND-NUM"])
    assert "kind" not in table.column_names
    assert table.schema.field("kind_num").type == pa.int16()
    assert table.column("kind_num").to_pylist() == [42]
    assert table.column_names.index("kind_num") == SCHEMA.names.index("kind")


def test_unsigned_binary_and_long_zoned(tmp_path: Path) -> None:
    copybook = """\
       01  R.
           05  U8      PIC 9(18) COMP.
           05  U4V     PIC 9(3)V99 COMP-5.
           05  Z31     PIC S9(29)V99.
           05  P31     PIC 9(31) COMP-3.
    """
    values = [
        (2**64 - 1, 2**32 - 1, -(10**31 - 1), 10**31 - 1),
        (0, 0, 10**30 + 7, 1),
    ]
    data = b"".join(binary(a, 8, signed=False) + binary(b, 4, signed=False) + zoned(c, 31) + packed(d, 31, False)
                    for a, b, c, d in values)
    table = read(tmp_path, data, copybook)
    assert table.schema == pa.schema([("u8", pa.decimal128(20, 0)), ("u4v", pa.decimal128(10, 2)),
                                      ("z31", pa.decimal128(31, 2)), ("p31", pa.decimal128(31, 0))])
    assert table.to_pylist() == [
        {"u8": Decimal(2**64 - 1), "u4v": Decimal(2**32 - 1).scaleb(-2), "z31": Decimal(f"{-(10**31 - 1)}E-2"),
         "p31": Decimal(10**31 - 1)},
        {"u8": Decimal(0), "u4v": Decimal("0.00"), "z31": Decimal(f"{10**30 + 7}E-2"), "p31": Decimal(1)},
    ]


def test_free_format_copybook_without_01_level(tmp_path: Path) -> None:
    copybook = """\
    * no sequence area, no 01 level
      05 CODE      PIC XX.        *> inline comment
      EJECT.
      05 AMOUNTS   COMP-3.
         10 AMT    PIC S9(3)V9 OCCURS 2.
         10 CNT    PIC 9(3) DISPLAY.
      05 NOTE      PIC X(5) VALUE 'A. B'.
    """
    data = text("XY", 2) + packed(-1234, 4) + packed(5, 4) + zoned(7, 3, signed=False) + text("HI", 5)
    assert read(tmp_path, data, copybook).to_pylist() == [
        {"code": "XY", "amounts": {"amt": [Decimal("-123.4"), Decimal("0.5")], "cnt": 7}, "note": "HI"}
    ]


def test_several_01_records_are_alternative_layouts(tmp_path: Path) -> None:
    copybook = "01 HEADER-REC.\n  05 H-TYPE PIC X.\n  05 H-DATE PIC 9(8).\n01 DETAIL-REC.\n  05 D-TYPE PIC X.\n  05 D-AMT PIC S9(3) COMP-3.\n"
    data = text("H", 1) + zoned(20240131, 8, signed=False)
    assert read(tmp_path, data, copybook).to_pylist() == [{"h_type": "H", "h_date": 20240131}]
    detail = text("D", 1) + packed(-5, 3) + text("", 6)
    assert read(tmp_path, detail, copybook, redefines=["DETAIL-REC"]).to_pylist() == [{"d_type": "D", "d_amt": -5}]


def test_random_rows_in_parallel_splits_and_small_batches(tmp_path: Path) -> None:
    rng = random.Random(8)
    rows = [random_row(rng, i) for i in range(2_000)]
    data = b"".join(encode(r) for r in rows)
    reader = make_reader(tmp_path, data, split_mb=0.05, batch_rows=97)
    splits = reader.plan(reader.discover()[0], None)
    assert len(splits) == 5  # 240,000 bytes in ranges of 436 records (52,320 bytes, about 0.05 MiB)
    assert all(s.params["start"] % 120 == 0 for s in splits)
    parts = [pa.Table.from_batches(list(reader.read(s)), schema=SCHEMA) for s in reversed(splits)]
    assert max(b.num_rows for s in splits for b in reader.read(s)) == 97
    assert pa.concat_tables(reversed(parts)).to_pylist() == rows
    assert read(tmp_path, data).to_pylist() == rows


def test_rdw_variable_length_records(tmp_path: Path) -> None:
    short = encode(ROWS[0])[:96]  # ends inside LINES(2), after its QTY: later fields are null
    data = b"".join(rdw(encode(r)) for r in ROWS) + rdw(short) + rdw(encode(ROWS[1]) + b"extra")
    table = read(tmp_path, data, record_format="rdw", batch_rows=2)
    rows = table.to_pylist()
    assert rows[:4] == ROWS
    assert rows[5] == ROWS[1]  # bytes past the layout are ignored
    assert {k: v for k, v in rows[4].items() if k not in ("lines", "kind", "huge", "optional_num")} == {
        k: v for k, v in ROWS[0].items() if k not in ("lines", "kind", "huge", "optional_num")
    }
    assert rows[4]["lines"] == [{"qty": 5, "code": "XY"}, {"qty": 0, "code": None}]
    assert (rows[4]["kind"], rows[4]["huge"], rows[4]["optional_num"]) == (None, None, None)


def test_rdw_runs_of_mixed_lengths(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = [random_row(rng, i) for i in range(3_000)]
    extra = 0
    records = []
    for row in rows:
        if rng.random() < 0.02:  # runs of one length, then another (the reader guesses runs)
            extra = rng.choice([0, 1, 7, 300])
        records.append(rdw(encode(row) + b"\x00" * extra))
    table = read(tmp_path, b"".join(records), record_format="rdw", batch_rows=500)
    assert table.to_pylist() == rows


def test_rdw_file_that_is_not_rdw(tmp_path: Path) -> None:
    with pytest.raises(PluginFailed, match=r"record 1 at byte 0 starts with X'F0F0F0F1'"):
        read(tmp_path, encode(ROWS[0]), record_format="rdw")


def test_rdw_file_cut_short(tmp_path: Path) -> None:
    with pytest.raises(PluginFailed, match=r"the last record \(at byte 124\) is cut short"):
        read(tmp_path, rdw(encode(ROWS[0])) + rdw(encode(ROWS[1]))[:50], record_format="rdw")


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("copybook", "message"),
    [
        ("01 R.\n  05 A PIC X(3).\n  05 B PIC 9(2)\n", r"line 3: the entry '05 B PIC 9\(2\)' does not end"),
        ("01 R.\n  05 A PIC X(3) COMP-3.\n", r"line 2: A is not numeric \(PIC X\(3\)\), so it cannot be COMP-3"),
        ("01 R.\n  05 A PIC X(3).\n  05 B OCCURS 1 TO 5.\n     10 C PIC X.\n",
         "line 3: B: OCCURS 1 TO 5 needs DEPENDING ON"),
        ("01 R.\n  05 B OCCURS 1 TO 5 DEPENDING ON N.\n     10 C PIC X.\n  05 N PIC 9.\n",
         "line 2: B OCCURS … DEPENDING ON N, which does not come before"),
        ("01 R.\n  05 N PIC X.\n  05 B OCCURS 1 TO 5 DEPENDING ON N.\n     10 C PIC X.\n",
         "line 3: B OCCURS … DEPENDING ON N, which is not an integer field"),
        ("01 R.\n  05 A PIC X(3).\n     10 B PIC X.\n", r"line 3: A \(line 2\) has a PIC clause"),
        ("01 R.\n  05 A PIC X(3) FOO.\n", "line 2: unexpected 'FOO'"),
        ("01 R.\n  05 A PIC X(3).\n  05 B REDEFINES Z PIC X.\n", "line 3: B REDEFINES Z"),
        ("01 R.\n  05 A POINTER.\n", "line 2: USAGE POINTER of A is not supported"),
        ("01 R.\n  05 A PIC 9(4) COMP-1.\n", "line 2: A is COMP-1/COMP-2 .floating point., which takes no PIC"),
        ("01 R.\n  05 A PIC X.\n  A PIC X.\n", "line 3: expected a level number, found 'A'"),
        ("01 R.\n  05 A PIC X.\n  05 A PIC 9.\n", "line 3: A gives the column 'a', like A on line 2"),
        ("01 R.\n  05 G.\n  05 A PIC X.\n", "line 2: G has neither a PIC clause nor subordinate items"),
    ],
)
def test_a_copybook_that_does_not_parse(tmp_path: Path, copybook: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        read(tmp_path, b"", copybook)
    assert "test.cpy" in str(caught.value)


def test_file_length_not_a_multiple_of_the_record_length(tmp_path: Path) -> None:
    with pytest.raises(PluginFailed, match=r"holds 246 bytes of records, which is not a whole number of 120-byte records") as e:
        read(tmp_path, encode(ROWS[0]) * 2 + b"\x40" * 6)
    assert "record_format: V" in str(e.value)


def test_an_invalid_packed_nibble_names_record_and_field(tmp_path: Path) -> None:
    records = [bytearray(encode(r)) for r in ROWS * 2]
    records[2][12] = 0xA1  # AMOUNT's first byte: nibble A is not a digit
    records[4][56] = 0xFA  # a later bad record is not the one named
    data = b"".join(records)
    with pytest.raises(PluginFailed) as caught:
        read(tmp_path, data)
    message = str(caught.value)
    assert "test.dat: record 3 (at byte 240): field AMOUNT (bytes 13-17 of the record) holds X'A10000000C'" in message
    assert "(1 more bad records in the same batch)" in message
    assert "not a valid packed decimal" in message
    assert "on_invalid_number: null" in message


def test_an_invalid_zoned_digit_names_record_and_field(tmp_path: Path) -> None:
    records = [bytearray(encode(r)) for r in ROWS]
    records[1][56] = 0xFA  # ZONED-U's middle digit: zone F, digit A
    with pytest.raises(PluginFailed, match=r"record 2 \(at byte 120\): field ZONED-U \(bytes 56-58 of the record\) "
                       r"holds X'F0FAF0', which is not a valid zoned decimal"):
        read(tmp_path, b"".join(records))


def test_an_invalid_value_inside_occurs_names_the_occurrence(tmp_path: Path) -> None:
    record = bytearray(encode(ROWS[0]))
    record[95] = 0x09  # LINES(2) QTY's last byte: sign nibble 9 is no sign
    with pytest.raises(PluginFailed, match=r"field QTY\(2\) \(bytes 95-96 of the record\) holds X'0009'"):
        read(tmp_path, bytes(record))


def test_bad_records_go_to_the_reject_file(tmp_path: Path) -> None:
    records = [encode(r) for r in ROWS * 3]
    bad = {2: bytearray(records[2]), 7: bytearray(records[7])}
    bad[2][12] = 0xA1
    bad[7][56] = 0xFA
    for index, record in bad.items():
        records[index] = bytes(record)
    reject = tmp_path / "rejects" / "bad.dat"
    reject.parent.mkdir()
    reject.write_bytes(b"left over from the last run")
    table = read(tmp_path, b"".join(records), on_error="reject", reject_path=str(reject), split_mb=0.001)
    good = [r for i, r in enumerate(ROWS * 3) if i not in bad]
    assert table.to_pylist() == good
    assert reject.read_bytes() == records[2] + records[7]


def test_rdw_rejects_keep_their_rdw(tmp_path: Path) -> None:
    record = bytearray(encode(ROWS[1]))
    record[12] = 0xA1
    reject = tmp_path / "bad.dat"
    data = rdw(encode(ROWS[0])) + rdw(bytes(record))
    table = read(tmp_path, data, record_format="rdw", on_error="reject", reject_path=str(reject))
    assert table.to_pylist() == ROWS[:1]
    assert reject.read_bytes() == rdw(bytes(record))


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="no reject_path"):
        CobolConfig(path="x", copybook="y", on_error="reject")
    with pytest.raises(ValidationError, match="unknown encoding 'ebcdic-xx'"):
        CobolConfig(path="x", copybook="y", encoding="ebcdic-xx")
    with pytest.raises(ValidationError, match="not a single-byte code page"):
        CobolConfig(path="x", copybook="y", encoding="utf-16")
    with pytest.raises(ValidationError, match="Extra inputs"):
        CobolConfig(path="x", copybook="y", recordformat="rdw")  # type: ignore[call-arg]


# --- through the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def in_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A work directory holding the example job and its data under examples/, as its relative paths expect."""
    shutil.copytree(EXAMPLES / "data" / "cobol", tmp_path / "examples" / "data" / "cobol",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "examples" / "jobs").mkdir()
    shutil.copy(EXAMPLES / "jobs" / "cobol_accounts.yaml", tmp_path / "examples" / "jobs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_sample_file_is_what_make_sample_writes(in_copy: Path) -> None:
    committed = (in_copy / "examples/data/cobol/accounts.dat").read_bytes()
    (in_copy / "examples/data/cobol/accounts.dat").unlink()
    subprocess.run([sys.executable, "examples/data/cobol/make_sample.py"], check=True, capture_output=True)
    assert (in_copy / "examples/data/cobol/accounts.dat").read_bytes() == committed


def test_example_job_through_the_cli(in_copy: Path, cli: Callable[..., Result]) -> None:
    result = cli("run", "examples/jobs/cobol_accounts.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_written"] == 30
    assert report["reader"]["implementation"] == "cobol"
    assert report["reader"]["origin"] == "entry point"
    assert report["datasets"][0]["splits"] > 1
    table = pq.read_table(in_copy / "out" / "cobol_accounts").sort_by("acct_id")
    assert table.schema.field("balance").type == pa.decimal128(13, 2)
    assert table.column("acct_id").to_pylist() == list(range(1_000_000_001, 1_000_000_031))
    first, seventh = table.slice(0, 1).to_pylist()[0], table.slice(6, 1).to_pylist()[0]
    assert first["customer_name"] == "ALAN TURING"
    assert first["balance"] == Decimal("7919.01")
    assert first["last_txn_amount"] == Decimal("-13.01")
    assert first["interest_rate"] == Decimal("0.0135")
    assert first["monthly_balances"] == [Decimal("7919.01"), Decimal("7909.01"), Decimal("7899.01")]
    assert first["address_info"] == {"city": "NEW YORK", "postcode": "10037"}
    assert seventh["balance"] == Decimal("-55433.07")
    assert table.column("address_info").combine_chunks().field("city").to_pylist()[2] == "ZÜRICH"


def test_bad_data_through_the_cli_is_a_plugin_error(in_copy: Path, cli: Callable[..., Result]) -> None:
    data = bytearray((in_copy / "examples/data/cobol/accounts.dat").read_bytes())
    data[134 * 4 + 52] = 0xFF  # record 5, BALANCE
    (in_copy / "examples/data/cobol/accounts.dat").write_bytes(bytes(data))
    result = cli("run", "examples/jobs/cobol_accounts.yaml", "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert "record 5 (at byte 536): field BALANCE (bytes 53-59 of the record)" in report["error"]
    assert not (in_copy / "out" / "cobol_accounts").exists() or not list((in_copy / "out").rglob("*.parquet"))


@pytest.mark.parametrize("sandboxed", [False, True], ids=["in process", "sandboxed"])
def test_invalid_numbers_read_as_null_are_counted_in_the_report(
    in_copy: Path, cli: Callable[..., Result], request: pytest.FixtureRequest, sandboxed: bool,
) -> None:
    """The counts cross the sandbox's process boundary into the run report, from every split."""
    if sandboxed:
        sandboxing.working_bwrap(request.node)
    data = bytearray((in_copy / "examples/data/cobol/accounts.dat").read_bytes())
    for record in (4, 11, 12, 27):  # in different splits (split_mb: 0.001)
        data[134 * record + 52] = 0xFF  # BALANCE
    data[134 * 20 + 63] = 0x15  # record 21, CREDIT-LIMIT: sign nibble 5
    (in_copy / "examples/data/cobol/accounts.dat").write_bytes(bytes(data))
    job = yaml.safe_load((in_copy / "examples/jobs/cobol_accounts.yaml").read_text())
    job["source"]["reader"]["options"]["on_invalid_number"] = "null"
    if sandboxed:  # the sandbox sees only what it is granted, read-only
        folder = in_copy / "examples/data/cobol"
        options = job["source"]["reader"]["options"]
        options["path"], options["copybook"] = str(folder / "accounts.dat"), str(folder / "accounts.cpy")
        job["source"]["reader"]["sandbox"] = {"enabled": True, "read_paths": [str(folder)]}
    (in_copy / "examples/jobs/cobol_accounts.yaml").write_text(yaml.safe_dump(job))
    result = cli("run", "examples/jobs/cobol_accounts.yaml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_written"] == 30 and report["datasets"][0]["splits"] > 1
    assert ("sandbox" in report["reader"]["origin"]) == sandboxed, report["reader"]
    assert report["counters"] == {"reader": {"invalid_numbers.BALANCE": 4, "invalid_numbers.CREDIT-LIMIT": 1}}
    table = pq.read_table(in_copy / "out" / "cobol_accounts")
    assert table.column("balance").null_count == 4 and table.column("credit_limit").null_count == 1


def test_a_bad_copybook_through_the_cli_is_a_config_error(in_copy: Path, cli: Callable[..., Result]) -> None:
    (in_copy / "examples/data/cobol/accounts.cpy").write_text("       01  R.\n           05  A  PIC X(3)\n")
    result = cli("run", "examples/jobs/cobol_accounts.yaml")
    assert result.exit_code == 2, result.output
    assert "accounts.cpy, line 2" in result.output


def test_settings_beside_the_type_are_refused(write_job: Callable[..., Path], cli: Callable[..., Result]) -> None:
    job = write_job("""
        version: 1
        name: misplaced
        source:
          type: cobol
          path: data/x.dat
          reader: {type: custom, implementation: cobol, fallback: fail, options: {path: a, copybook: b}}
        target: {type: parquet, path: out/x}
    """)
    result = cli("run", str(job))
    assert result.exit_code == 2, result.output
    assert "source.path: the cobol reader takes its settings under source.reader.options" in result.output
