"""Multi-segment files: a segment id selects the layout; wide or one dataset per segment; hierarchical ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.errors import ConfigError
from tests.examples.cobol.encoder import rdw, text, zoned
from tests.examples.cobol.harness import make_reader, read, read_all

COPYBOOK = """\
       01  REC.
           05  SEG         PIC X.
           05  COMPANY.
               10  CNAME   PIC X(5).
           05  PERSON REDEFINES COMPANY.
               10  AGE     PIC 9(2).
               10  FILLER  PIC X(3).
"""
MAP = {"COMPANY": "C", "PERSON": ["P", "Q"]}


def company(name: str) -> bytes:
    return text("C", 1) + text(name, 5)


def person(age: int, seg: str = "P") -> bytes:
    return text(seg, 1) + zoned(age, 2, False) + b"\xff\xff\xff"  # the filler is not read


DATA = company("ACME") + person(42) + person(7, "Q") + company("INIT") + person(9) + text("X", 1) + text("", 5)


def test_one_wide_table(tmp_path: Path) -> None:
    rows = read(tmp_path, DATA, COPYBOOK, segment_field="SEG", redefine_segment_id_map=MAP).to_pylist()
    assert rows == [
        {"seg": "C", "company": {"cname": "ACME"}, "person": None},
        {"seg": "P", "company": None, "person": {"age": 42}},
        {"seg": "Q", "company": None, "person": {"age": 7}},
        {"seg": "C", "company": {"cname": "INIT"}, "person": None},
        {"seg": "P", "company": None, "person": {"age": 9}},
        {"seg": "X", "company": None, "person": None},  # an unknown segment: kept, no segment fields
    ]


def test_invalid_bytes_of_another_segment_are_no_error(tmp_path: Path) -> None:
    data = company("AB") + person(3)  # "AB" is no valid AGE, but the record is a company
    assert len(read(tmp_path, data, COPYBOOK, segment_field="SEG", redefine_segment_id_map=MAP)) == 2


def test_one_dataset_per_segment(tmp_path: Path) -> None:
    reader = make_reader(tmp_path, b"".join(rdw(DATA[i: i + 6]) for i in range(0, len(DATA), 6)), COPYBOOK,
                         record_format="V", segment_field="SEG", redefine_segment_id_map=MAP,
                         segment_output="per_segment", dataset="crm")
    tables = read_all(reader)
    assert {k: v.to_pylist() for k, v in tables.items()} == {
        "crm_company": [{"seg": "C", "company": {"cname": "ACME"}}, {"seg": "C", "company": {"cname": "INIT"}}],
        "crm_person": [{"seg": "P", "person": {"age": 42}}, {"seg": "Q", "person": {"age": 7}},
                       {"seg": "P", "person": {"age": 9}}],
    }


def test_hierarchical_ids(tmp_path: Path) -> None:
    table = read(tmp_path, {"a.dat": DATA, "b.dat": person(1) + company("Z")}, COPYBOOK, segment_field="SEG",
                 redefine_segment_id_map=MAP, segment_id_levels=["C", ["P", "Q"]], segment_id_prefix="run1_",
                 batch_rows=2)
    assert table.select(["seg", "seg_id0", "seg_id1"]).to_pylist() == [
        {"seg": "C", "seg_id0": "run1_0_0", "seg_id1": None},
        {"seg": "P", "seg_id0": "run1_0_0", "seg_id1": "run1_0_1"},
        {"seg": "Q", "seg_id0": "run1_0_0", "seg_id1": "run1_0_2"},
        {"seg": "C", "seg_id0": "run1_0_3", "seg_id1": None},
        {"seg": "P", "seg_id0": "run1_0_3", "seg_id1": "run1_0_4"},
        {"seg": "X", "seg_id0": "run1_0_3", "seg_id1": "run1_0_4"},
        {"seg": "P", "seg_id0": None, "seg_id1": "run1_1_0"},  # an orphan: no root before it
        {"seg": "C", "seg_id0": "run1_1_1", "seg_id1": None},
    ]


def test_a_segment_map_naming_no_alternative(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redefine_segment_id_map names NOPE"):
        read(tmp_path, DATA, COPYBOOK, segment_field="SEG", redefine_segment_id_map={"NOPE": "N"})
    with pytest.raises(ConfigError, match="segment_field names CNAME-X"):
        read(tmp_path, DATA, COPYBOOK, segment_field="CNAME-X", redefine_segment_id_map=MAP)
