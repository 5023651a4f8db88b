"""Code pages: the shipped EBCDIC tables are IBM's (as glibc's iconv has them), ASCII files are ASCII."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from dativo_cobol.codepages import code_page, shipped_pages
from dativo_cobol.reader import CobolConfig
from pydantic import ValidationError

from tests.examples.cobol.encoder import ascii_zoned, text, zoned
from tests.examples.cobol.harness import read
from tests.fixtures.required import unavailable

COPYBOOK = "01 R.\n  05 NAME PIC X(4).\n  05 AMT PIC S9(3)V99.\n"


def iconv(page: str) -> str:
    out = subprocess.run(["iconv", "-f", f"IBM{page.removeprefix('cp')}", "-t", "UTF-16BE"], input=bytes(range(256)),
                         capture_output=True, check=True).stdout
    return out.decode("utf-16-be")


@pytest.mark.parametrize("page", shipped_pages())
def test_shipped_tables_are_ibms(page: str) -> None:
    if shutil.which("iconv") is None:
        unavailable("iconv (glibc's libc-bin) is needed to compare the code page tables")
    assert code_page(page).chars == iconv(page)
    assert code_page(page).family == "ebcdic"


def test_cp1047_is_cp037_with_six_swaps() -> None:
    base, page = bytes(range(256)).decode("cp037"), code_page("cp1047").chars
    assert {i: page[i] for i in range(256) if page[i] != base[i]} == {
        0x5F: "^", 0xAD: "[", 0xB0: "¬", 0xBA: "Ý", 0xBB: "¨", 0xBD: "]"}


@pytest.mark.parametrize(("page", "base"), [("cp1141", "cp273"), ("cp1148", "cp500"), ("cp1140", "cp037")])
def test_euro_pages_put_the_euro_at_9f(page: str, base: str) -> None:
    chars, old = code_page(page).chars, bytes(range(256)).decode(base)
    assert chars[0x9F] == "€" and old[0x9F] == "¤"


def test_cp1047_text_through_the_reader(tmp_path: Path) -> None:
    data = "[^]!".encode("cp037").translate(bytes.maketrans(b"\xba\xb0\xbb", b"\xad\x5f\xbd")) + zoned(12345, 5)
    assert read(tmp_path, data, COPYBOOK, encoding="cp1047").column("name").to_pylist() == ["[^]!"]


def test_ascii_files_have_ascii_numbers(tmp_path: Path) -> None:
    data = text("ABC", 4, "ascii") + ascii_zoned(-12345, 5) + text("X", 4, "ascii") + ascii_zoned(700, 5)
    rows = read(tmp_path, data, COPYBOOK, encoding="ascii").to_pylist()
    assert [(r["name"], str(r["amt"])) for r in rows] == [("ABC", "-123.45"), ("X", "7.00")]


def test_an_unknown_or_multibyte_encoding_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown encoding 'cp9999'"):
        CobolConfig(path="x", copybook="y", encoding="cp9999")
    with pytest.raises(ValidationError, match="not a single-byte code page"):
        CobolConfig(path="x", copybook="y", encoding="utf-16")
    with pytest.raises(ValidationError, match="record_format D .text lines. needs an ASCII-family encoding"):
        CobolConfig(path="x", copybook="y", record_format="D")


@pytest.mark.parametrize("page", ["cp037", "cp1140", "cp1146", "cp285", "latin-1", "ascii"])
@pytest.mark.parametrize("trim", ["right", "left", "both", "none"])
def test_text_matches_the_code_page_value_by_value(page: str, trim: str) -> None:
    """ASCII, Latin-1 and beyond-U+00FF characters (€, ‾, undefined bytes) in one batch, with padding."""
    import random

    import numpy as np
    from dativo_cobol.copybook import parse_copybook
    from dativo_cobol.decoder import Decoder

    cp = code_page(page)
    rng = random.Random(3)
    rows = [bytes(rng.choice([cp.space, 0, rng.randrange(256)]) for _ in range(6)) for _ in range(300)]
    rows += [bytes([cp.space] * 6), bytes(6), bytes([0x9F, 0x9F, 0, cp.space, 0xC1, cp.space])]
    matrix = np.frombuffer(b"".join(rows), np.uint8).reshape(len(rows), 6)
    decoder = Decoder(parse_copybook("01 R.\n  05 T PIC X(6).\n"), page, trim)  # type: ignore[arg-type]
    batch, _ = decoder.decode(matrix)
    strip = {"right": str.rstrip, "left": str.lstrip, "both": str.strip, "none": lambda s, _: s}[trim]
    expected = [None if trim != "none" and not any(r) else strip("".join(cp.chars[b] for b in r), " \x00")
                for r in rows]
    assert batch.column(0).to_pylist() == expected
