"""Record formats: F, FB, V (both byte orders, both length rules), VB, VS and VBS (spanned records), D, lengths inside records, headers and
footers, gzip, and splits that start at record boundaries."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
from dativo_cobol import records
from dativo_cobol.reader import CobolConfig
from pydantic import ValidationError

from dativo.errors import PluginFailed
from tests.examples.cobol.encoder import (
    ascii_zoned, bdw, binary, packed, rdw, spanned, spanned_blocks, text, zoned,
)
from tests.examples.cobol.harness import make_reader, read

COPYBOOK = """\
       01  TXN.
           05  ID      PIC 9(6).
           05  NAME    PIC X(10).
           05  AMT     PIC S9(7)V99 COMP-3.
"""


def record(i: int, name: str | None = None) -> bytes:
    return zoned(i, 6, False) + text(name or f"N{i}", 10) + packed(i * 137 - 5000, 9)


def expected(i: int, name: str | None = None) -> dict[str, object]:
    from decimal import Decimal
    return {"id": i, "name": name or f"N{i}", "amt": Decimal(i * 137 - 5000).scaleb(-2)}


ROWS = list(range(300))


def splits_and_rows(tmp_path: Path, data: bytes, copybook: str = COPYBOOK,
                    **options: object) -> tuple[int, list[dict[str, object]]]:
    reader = make_reader(tmp_path, data, copybook, **options)
    reader.check()
    dataset = reader.discover()[0]
    splits = reader.plan(dataset, None)
    rows = [r for s in splits for b in reader.read(s) for r in b.to_pylist()]
    return len(splits), rows


def test_fixed_records_in_parallel_splits(tmp_path: Path) -> None:
    count, rows = splits_and_rows(tmp_path, b"".join(record(i) for i in ROWS), split_mb=0.001, batch_rows=7)
    assert count > 3 and rows == [expected(i) for i in ROWS]


@pytest.mark.parametrize("big_endian", [True, False])
@pytest.mark.parametrize("includes_header", [True, False])
def test_rdw_byte_orders_and_length_rules(tmp_path: Path, big_endian: bool, includes_header: bool) -> None:
    rng = random.Random(4)
    names = ["X" * rng.randint(1, 10) for _ in ROWS]
    data = b"".join(rdw(record(i, names[i]), big_endian, includes_header) for i in ROWS)
    count, rows = splits_and_rows(tmp_path, data, record_format="V", is_rdw_big_endian=big_endian,
                                  is_rdw_part_of_record_length=includes_header, split_mb=0.001, batch_rows=11)
    assert count > 3
    assert rows == [expected(i, names[i]) for i in ROWS]


def test_rdw_splits_of_mixed_lengths_neither_cut_nor_repeat_records(tmp_path: Path) -> None:
    rng = random.Random(9)
    extra = [rng.choice([0, 0, 3, 40]) for _ in ROWS]
    data = b"".join(rdw(record(i) + b"\x40" * extra[i]) for i in ROWS)
    count, rows = splits_and_rows(tmp_path, data, record_format="V", split_mb=0.0005, batch_rows=13)
    assert count > 5 and rows == [expected(i) for i in ROWS]


@pytest.mark.parametrize("lengths", ["mixed", "alike"])
def test_the_rdw_walk_looks_at_each_header_a_bounded_number_of_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lengths: str) -> None:
    """Planning and reading compare a run of equal RDWs at once, but a file of mixed lengths must not compare
    the rest of the buffer after every record (that made planning a 1M-record file take minutes)."""
    rng = random.Random(3)
    ids = list(range(20_000))
    extra = [rng.randint(0, 30) if lengths == "mixed" else 0 for _ in ids]
    data = b"".join(rdw(record(i % 300) + b"\x40" * extra[i]) for i in ids)
    compared = []
    same_header_run = records._same_header_run
    monkeypatch.setattr(records, "_same_header_run", lambda *args: compared.append(min(args[4:])) or
                        same_header_run(*args))
    count, rows = splits_and_rows(tmp_path, data, record_format="V", split_mb=len(data) / 2.5 / 2**20,
                                  batch_rows=4096)
    assert count == 3 and len(rows) == len(ids)
    assert sum(compared) <= 4 * len(ids)  # planning walks to the last cut, then each split reads its records


def test_a_batch_larger_than_one_read_is_walked_on_not_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of records that more than one read of the file holds: the walk goes on where it stopped."""
    rng = random.Random(5)
    ids = list(range(60_000))
    data = b"".join(rdw(record(i % 300) + b"\x40" * rng.randint(0, 30)) for i in ids)
    assert len(data) > 2 * 2**20  # reads of batch_rows × (record length + 8) bytes: a batch spans two
    walked = []
    chain = records._rdw_chain
    monkeypatch.setattr(records, "_rdw_chain", lambda *args: (lambda out: walked.append(len(out[0])) or out)(
        chain(*args)))
    reader = make_reader(tmp_path, data, COPYBOOK, record_format="V", batch_rows=50_000)
    batches = [b for split in reader.plan(reader.discover()[0], None) for b in reader.read(split)]
    assert [b.num_rows for b in batches] == [50_000, 10_000]
    assert [r["id"] for b in batches for r in b.select(["id"]).to_pylist()] == [i % 300 for i in ids]
    assert sum(walked) <= len(ids)


def test_rdw_adjustment(tmp_path: Path) -> None:
    data = b"".join((len(record(i)) + 2).to_bytes(2, "big") + b"\0\0" + record(i) for i in ROWS[:5])
    assert read(tmp_path, data, COPYBOOK, record_format="V", rdw_adjustment=2).to_pylist() == [
        expected(i) for i in ROWS[:5]]


def test_an_rdw_length_that_excludes_its_header_is_named_not_mis_split(tmp_path: Path) -> None:
    data = b"".join(rdw(record(i), includes_header=False) for i in ROWS[:5])
    with pytest.raises(PluginFailed, match="do not chain up as configured.*is_rdw_part_of_record_length: false"):
        read(tmp_path, data, COPYBOOK, record_format="V")


def test_a_broken_rdw_names_the_record_and_offset(tmp_path: Path) -> None:
    data = rdw(record(1)) + rdw(record(2)) + b"\x00\x10\x01\x00" + record(3) + rdw(record(4)) * 40
    with pytest.raises(PluginFailed, match=r"record 3 at byte 50 starts with X'00100100'"):
        read(tmp_path, data, COPYBOOK, record_format="V")


@pytest.mark.parametrize("fmt", ["V", "VS"])
def test_a_broken_descriptor_word_past_the_last_cut_is_named_by_the_split_that_reads_it(
        tmp_path: Path, fmt: str) -> None:
    """Planning walks the descriptor words only up to the last cut; the read of the last split checks the rest."""
    good = [rdw(record(i)) if fmt == "V" else b"".join(spanned(record(i), 9)) for i in ROWS]
    broken = len(good) - 3
    at = sum(len(g) for g in good[:broken])
    head = b"\x00\x10\x01\x00" if fmt == "V" else b"\x00\x10\x00\x07"  # neither ends as its format requires
    data = b"".join(good[:broken]) + head + b"".join(good[broken:])
    reader = make_reader(tmp_path, data, COPYBOOK, record_format=fmt, split_mb=len(data) / 2.5 / 2**20)
    splits = reader.plan(reader.discover()[0], None)
    assert len(splits) == 3 and int(splits[-1].params["start"]) < at
    for split in splits[:-1]:
        assert sum(b.num_rows for b in reader.read(split)) > 0
    where = f"record {broken + 1} at byte {at}" if fmt == "V" else f"byte {at}"
    with pytest.raises(PluginFailed, match=rf"{where} starts with X'{head.hex().upper()}', which is not a valid"):
        list(reader.read(splits[-1]))


def test_vb_blocks_split_at_blocks(tmp_path: Path) -> None:
    blocks = [bdw(b"".join(rdw(record(i)) for i in ROWS[k: k + 17])) for k in range(0, len(ROWS), 17)]
    count, rows = splits_and_rows(tmp_path, b"".join(blocks), record_format="VB", split_mb=0.001, batch_rows=10)
    assert count > 3 and rows == [expected(i) for i in ROWS]


def test_a_record_that_does_not_fit_its_block(tmp_path: Path) -> None:
    block = bytearray(bdw(rdw(record(1)) + rdw(record(2))))
    block[4 + 25 + 1] += 3  # the second RDW claims 3 bytes more than the block has
    with pytest.raises(PluginFailed, match=r"the record at byte 29 \(in the block at byte 0\)"):
        read(tmp_path, bytes(block), COPYBOOK, record_format="VB")


def padded(i: int) -> bytes:
    """A record of the copybook with 0–60 filler bytes after it, so that records span segments unevenly."""
    return record(i) + b"\x40" * random.Random(i).choice([0, 7, 30, 60])


def test_vs_records_are_joined_from_their_segments_in_parallel_splits(tmp_path: Path) -> None:
    data = b"".join(b"".join(spanned(padded(i), 9)) for i in ROWS)
    count, rows = splits_and_rows(tmp_path, data, record_format="VS", split_mb=0.001, batch_rows=7)
    assert count > 3 and rows == [expected(i) for i in ROWS]


@pytest.mark.parametrize("block_size", [60, 512])
def test_vbs_records_span_blocks_and_splits_start_at_a_record(tmp_path: Path, block_size: int) -> None:
    data = spanned_blocks([padded(i) for i in ROWS], block_size)
    count, rows = splits_and_rows(tmp_path, data, record_format="vbs", split_mb=0.001, batch_rows=10)
    assert count > 3 and rows == [expected(i) for i in ROWS]


def test_a_gzip_vbs_file_is_joined_as_it_streams(tmp_path: Path) -> None:
    data = gzip.compress(spanned_blocks([padded(i) for i in ROWS], 100))
    count, rows = splits_and_rows(tmp_path, data, record_format="VBS", batch_rows=16)
    assert count == 1 and rows == [expected(i) for i in ROWS]


def test_broken_segment_chains_name_the_offset(tmp_path: Path) -> None:
    first, *rest = spanned(record(1), 9)
    orphan = b"".join(rest) + b"".join(spanned(record(2), 9))  # a middle segment with no first before it
    with pytest.raises(PluginFailed, match=r"the segment at byte 0 \(control code 3\) continues a record that "
                       "never started"):
        read(tmp_path, orphan, COPYBOOK, record_format="VS")
    twice = first + b"".join(spanned(record(2), 9))  # a record starts before the last one ended
    with pytest.raises(PluginFailed, match=r"the segment at byte 13 \(control code 1\) starts a new record "
                       r"\(the record at byte 0 has no last segment\)"):
        read(tmp_path, twice, COPYBOOK, record_format="VS")
    with pytest.raises(PluginFailed, match=r"the last record \(at byte 0\) is cut short"):
        read(tmp_path, first + rest[0], COPYBOOK, record_format="VS")


def test_rejected_spanned_records_are_written_as_segments_that_read_back(tmp_path: Path) -> None:
    bad = zoned(7, 6, False) + text("BAD", 10) + b"\xff" * 5 + b"\x40" * 40  # not a packed decimal
    data = b"".join(b"".join(spanned(p, 11)) for p in [padded(1), bad, padded(2)])
    rejects = tmp_path / "rejects.dat"
    rows = read(tmp_path, data, COPYBOOK, record_format="VS", on_invalid_number="reject_record",
                reject_path=str(rejects)).to_pylist()
    assert rows == [expected(1), expected(2)]
    assert rejects.read_bytes() == (len(bad) + 4).to_bytes(2, "big") + b"\x00\x00" + bad


def test_fb_blocks_of_fixed_records(tmp_path: Path) -> None:
    blocks = [bdw(b"".join(record(i) for i in ROWS[k: k + 10])) for k in range(0, len(ROWS), 10)]
    count, rows = splits_and_rows(tmp_path, b"".join(blocks), record_format="FB", split_mb=0.001)
    assert count > 2 and rows == [expected(i) for i in ROWS]


def test_text_lines_lf_and_crlf(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 ID PIC 9(6).\n  05 NAME PIC X(10).\n  05 AMT PIC S9(5)V99.\n"
    lines = [ascii_zoned(i, 6, False) + text(f"N{i}", 10, "ascii") + ascii_zoned(-i, 7) for i in ROWS]
    lines[3] = lines[3][:9]  # an editor dropped trailing spaces and the rest: fields hold what is there
    data = b"".join(line + (b"\r\n" if i % 2 else b"\n") for i, line in enumerate(lines))[:-1]  # no last LF
    count, rows = splits_and_rows(tmp_path, data, copybook, record_format="D", encoding="ascii", split_mb=0.001)
    from decimal import Decimal
    assert count > 2
    assert rows[3] == {"id": 3, "name": "N3", "amt": None}
    assert [r for i, r in enumerate(rows) if i != 3] == [
        {"id": i, "name": f"N{i}", "amt": Decimal(-i).scaleb(-2)} for i in ROWS if i != 3]


def test_record_length_field(tmp_path: Path) -> None:
    copybook = "01 R.\n  05 LEN PIC 9(4) COMP.\n  05 ID PIC 9(3).\n  05 NOTE PIC X(20).\n"
    notes = ["", "A", "HELLO WORLD", "X" * 20]
    data = b"".join(binary(5 + len(n), 2) + zoned(i, 3, False) + text(n, len(n)) for i, n in enumerate(notes))
    rows = read(tmp_path, data, copybook, record_length_field="LEN").to_pylist()
    assert [(r["id"], r["note"]) for r in rows] == [(0, None), (1, "A"), (2, "HELLO WORLD"), (3, "X" * 20)]


def test_record_length_other_than_the_copybooks(tmp_path: Path) -> None:
    data = b"".join(record(i) + b"\xff\xff" for i in ROWS[:3])
    assert read(tmp_path, data, COPYBOOK, record_length=len(record(0)) + 2).to_pylist() == [
        expected(i) for i in ROWS[:3]]


@pytest.mark.parametrize("fmt", ["F", "V"])
def test_file_headers_and_footers_are_skipped(tmp_path: Path, fmt: str) -> None:
    body = b"".join(record(i) if fmt == "F" else rdw(record(i)) for i in ROWS[:20])
    data = text("HEADER 2024-01-31", 40) + body + text("TRAILER 20", 25)
    count, rows = splits_and_rows(tmp_path, data, record_format=fmt, file_start_offset=40, file_end_offset=25,
                                  split_mb=0.0002)
    assert count > 1 and rows == [expected(i) for i in ROWS[:20]]


@pytest.mark.parametrize("fmt", ["F", "V", "VB"])
def test_gzip_files_are_streamed_as_one_split(tmp_path: Path, fmt: str) -> None:
    body = {"F": b"".join(record(i) for i in ROWS), "V": b"".join(rdw(record(i)) for i in ROWS),
            "VB": bdw(b"".join(rdw(record(i)) for i in ROWS[:150])) + bdw(b"".join(rdw(record(i)) for i in ROWS[150:]))}
    data = gzip.compress(b"HDR" + body[fmt] + b"FOOTER")
    count, rows = splits_and_rows(tmp_path, data, record_format=fmt, file_start_offset=3, file_end_offset=6,
                                  split_mb=0.0001, batch_rows=64)
    assert count == 1 and rows == [expected(i) for i in ROWS]


def test_a_cut_gzip_file_is_an_error(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(record(i) for i in ROWS) + b"xx")
    with pytest.raises(PluginFailed, match="2 bytes are left"):
        read(tmp_path, data, COPYBOOK)


def test_impossible_option_combinations() -> None:
    with pytest.raises(ValidationError, match="record_length and record_length_field apply to record_format F"):
        CobolConfig(path="x", copybook="y", record_format="V", record_length_field="LEN")
    with pytest.raises(ValidationError, match="segment_field and redefine_segment_id_map go together"):
        CobolConfig(path="x", copybook="y", segment_field="SEG")
    assert CobolConfig(path="x", copybook="y", record_format="rdw").record_format == "V"
    assert CobolConfig(path="x", copybook="y", on_error="reject", reject_path="r").on_invalid_number == "reject_record"
