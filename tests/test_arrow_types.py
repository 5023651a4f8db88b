"""Arrow types written as text in job files."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from dativo.arrow_types import parse_type


@pytest.mark.parametrize(
    ("text", "arrow_type"),
    [
        ("int64", pa.int64()),
        ("bigint", pa.int64()),
        ("Integer", pa.int32()),
        ("text", pa.string()),
        ("varchar", pa.string()),
        ("boolean", pa.bool_()),
        ("float64", pa.float64()),
        ("date32", pa.date32()),
        ("decimal128(12, 2)", pa.decimal128(12, 2)),
        ("decimal(38,9)", pa.decimal128(38, 9)),
        ("timestamp[us]", pa.timestamp("us")),
        ("timestamp[ns, tz=UTC]", pa.timestamp("ns", tz="UTC")),
        (" timestamp[ms, tz=Europe/Oslo] ", pa.timestamp("ms", tz="Europe/Oslo")),
    ],
)
def test_parse_type(text: str, arrow_type: pa.DataType) -> None:
    assert parse_type(text) == arrow_type


@pytest.mark.parametrize("text", ["money", "decimal(12)", "timestamp[minutes]", ""])
def test_unknown_type(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"'{text}' is not an Arrow type; use e.g. int64")):
        parse_type(text)
