"""The committed samples, one per record format (tests/examples/data/cobol), read to the same rows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.examples.cobol.harness import make_reader, read_all

DATA = Path(__file__).resolve().parents[1] / "data" / "cobol"
MAP = {"HEADER-DATA": "H", "DETAIL-DATA": "D"}

FORMATS: list[tuple[str, dict[str, Any]]] = [
    ("statement_f.dat", {}),
    ("statement_fb.dat", {"record_format": "FB"}),
    ("statement_v.dat", {"record_format": "V"}),
    ("statement_v_le.dat", {"record_format": "V", "is_rdw_big_endian": False, "is_rdw_part_of_record_length": False}),
    ("statement_vb.dat", {"record_format": "VB"}),
    ("statement_vs.dat", {"record_format": "VS"}),
    ("statement_vbs.dat", {"record_format": "VBS"}),
    ("statement_f_header.dat.gz", {"file_start_offset": 80, "file_end_offset": 20}),
    ("statement_d.txt", {"record_format": "D", "encoding": "ascii", "copybook": "statement_ascii.cpy"}),
]


def test_the_samples_are_what_make_samples_writes(tmp_path: Path) -> None:
    copy = tmp_path / "tests" / "examples" / "data" / "cobol"
    shutil.copytree(DATA.parents[3] / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns(
        "__pycache__", "*.dat", "*.gz", "*.txt", "statement_ascii.cpy", "fixtures", "test_*.py"))
    subprocess.run([sys.executable, str(copy / "make_samples.py")], check=True, capture_output=True)
    for name in [n for n, _ in FORMATS] + ["statement_ascii.cpy"]:
        assert (copy / name).read_bytes() == (DATA / name).read_bytes(), name


@pytest.mark.parametrize(("name", "options"), FORMATS, ids=[n for n, _ in FORMATS])
def test_every_format_reads_the_same_statement(tmp_path: Path, name: str, options: dict[str, Any]) -> None:
    options = dict(options)
    copybook = (DATA / options.pop("copybook", "statement.cpy")).read_text()
    reader = make_reader(tmp_path, (DATA / name).read_bytes(), copybook, segment_field="REC-TYPE",
                         redefine_segment_id_map=MAP, segment_output="per_segment", split_mb=0.0002, **options)
    tables = read_all(reader)
    headers, details = tables["cobol_test_header_data"], tables["cobol_test_detail_data"]
    assert [r["header_data"] for r in headers.to_pylist()] == [
        {"account_no": "DE0012345678", "branch": 1021, "opening_balance": Decimal("12500.00"),
         "holder_name": "MUELLER HANS"},
        {"account_no": "GB0098765432", "branch": 7, "opening_balance": Decimal("-42.10"),
         "holder_name": "O'NEILL SIOBHAN"},
        {"account_no": "CH0055501234", "branch": 3300, "opening_balance": Decimal("99999999.99"),
         "holder_name": "ZUERCHER KANTONAL"},
    ]
    assert len(details) == 12
    assert details.slice(5, 1).to_pylist()[0]["detail_data"] == {
        "txn_date": 20240202, "txn_amount": Decimal("-123.44"), "txn_code": 1001, "memo": "TRANSFER 11"}
