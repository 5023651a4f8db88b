"""Arrow data types written as text in job files (``int64``, ``decimal128(12, 2)``, ``timestamp[us, tz=UTC]``)."""

from __future__ import annotations

import re

import pyarrow as pa

_DECIMAL = re.compile(r"^decimal(?:128)?\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
_TIMESTAMP = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]]+?))?\s*\]$")
_ALIASES = {"text": "string", "varchar": "string", "integer": "int32", "bigint": "int64", "boolean": "bool"}


def parse_type(text: str) -> pa.DataType:
    """Parse an Arrow type name.

    Raises:
        ValueError: If ``text`` names no Arrow type.
    """
    name = _ALIASES.get(text.strip().lower(), text.strip())
    if match := _DECIMAL.match(name):
        return pa.decimal128(int(match[1]), int(match[2]))
    if match := _TIMESTAMP.match(name):
        return pa.timestamp(match[1], tz=match[2])
    try:
        return pa.type_for_alias(name)
    except ValueError:
        raise ValueError(
            f"'{text}' is not an Arrow type; use e.g. int64, float64, string, bool, date32, "
            "decimal128(12, 2), timestamp[us] or timestamp[us, tz=UTC]"
        ) from None
