"""Code pages of text and DISPLAY numbers: EBCDIC (mainframe files) or ASCII-family (files made off the host).

Python ships cp037, cp273, cp500, cp875, cp1026 and cp1140 but not cp1047 (z/OS UNIX Latin-1), the national
pages cp277-cp297 or their euro updates cp1141-cp1148, so those are shipped here as the code points where they
differ from cp037. The table comes from IBM's published mapping charts as GNU libc's iconv carries them
(``tools/make_codepages.py`` prints it; a test compares it with iconv). cp1047 is cp037 with six code points
swapped (``^ ¬ [ ] Ý ¨``); each cp114x is its national page with ``€`` in place of ``¤``.

A code page is EBCDIC when it spells the digit 0 as X'F0' and ASCII-family when as X'30'; the family decides
how DISPLAY numbers are read (zone ``F`` and overpunched signs ``C``/``D``, or ASCII digits with ``+``/``-`` and
the ``{A-I}J-R`` overpunch). ``utf-8`` text is taken as it is (valid UTF-8 is checked); its numbers are ASCII.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Literal


Family = Literal["ebcdic", "ascii"]

_DIFFERENCES = {
    "cp1047": (
        "5F:005E AD:005B B0:00AC BA:00DD BB:00A8 BD:005D"
    ),
    "cp277": (
        "47:007D 4A:0023 4F:0021 5A:00A4 5B:00C5 5F:005E 67:0024 6A:00F8 70:00A6 7B:00C6 7C:00D8 80:0040 "
        "9C:007B 9E:005B 9F:005D A1:00FC B0:00A2 BA:00AC BB:007C C0:00E6 D0:00E5 DC:007E"
    ),
    "cp278": (
        "43:007B 47:007D 4A:00A7 4F:0021 51:0060 5A:00A4 5B:00C5 5F:005E 63:0023 67:0024 6A:00F6 79:00E9 "
        "7B:00C4 7C:00D6 9F:005D A1:00FC B0:00A2 B5:005B BA:00AC BB:007C C0:00E4 CC:00A6 D0:00E5 DC:007E "
        "EC:0040"
    ),
    "cp280": (
        "44:007B 48:005C 4A:00B0 4F:0021 51:005D 54:007D 58:007E 5A:00E9 5F:005E 6A:00F2 79:00F9 7B:00A3 "
        "7C:00A7 90:005B A1:00EC B0:00A2 B1:0023 B5:0040 BA:00AC BB:007C C0:00E0 CD:00A6 D0:00E8 DD:0060 "
        "E0:00E7"
    ),
    "cp284": (
        "49:00A6 4A:005B 5A:005D 69:0023 6A:00F1 7B:00D1 A1:00A8 B0:00A2 BA:005E BB:0021 BD:007E"
    ),
    "cp285": (
        "4A:0024 5B:00A3 A1:203E B0:00A2 B1:005B BA:005E BC:007E"
    ),
    "cp297": (
        "44:0040 48:005C 4A:00B0 4F:0021 51:007B 54:007D 5A:00A7 5F:005E 6A:00F9 79:00B5 7B:00A3 7C:00E0 "
        "90:005B A0:0060 A1:00A8 B0:00A2 B1:0023 B5:005D BA:00AC BB:007C BD:007E C0:00E9 D0:00E8 DD:00A6 "
        "E0:00E7"
    ),
    "cp1141": (
        "43:007B 4A:00C4 4F:0021 59:007E 5A:00DC 5F:005E 63:005B 6A:00F6 7C:00A7 9F:20AC A1:00DF B0:00A2 "
        "B5:0040 BA:00AC BB:007C C0:00E4 CC:00A6 D0:00FC DC:007D E0:00D6 EC:005C FC:005D"
    ),
    "cp1142": (
        "47:007D 4A:0023 4F:0021 5A:20AC 5B:00C5 5F:005E 67:0024 6A:00F8 70:00A6 7B:00C6 7C:00D8 80:0040 "
        "9C:007B 9E:005B 9F:005D A1:00FC B0:00A2 BA:00AC BB:007C C0:00E6 D0:00E5 DC:007E"
    ),
    "cp1143": (
        "43:007B 47:007D 4A:00A7 4F:0021 51:0060 5A:20AC 5B:00C5 5F:005E 63:0023 67:0024 6A:00F6 71:005C "
        "79:00E9 7B:00C4 7C:00D6 9F:005D A1:00FC B0:00A2 B5:005B BA:00AC BB:007C C0:00E4 CC:00A6 D0:00E5 "
        "DC:007E E0:00C9 EC:0040"
    ),
    "cp1144": (
        "44:007B 48:005C 4A:00B0 4F:0021 51:005D 54:007D 58:007E 5A:00E9 5F:005E 6A:00F2 79:00F9 7B:00A3 "
        "7C:00A7 90:005B 9F:20AC A1:00EC B0:00A2 B1:0023 B5:0040 BA:00AC BB:007C C0:00E0 CD:00A6 D0:00E8 "
        "DD:0060 E0:00E7"
    ),
    "cp1145": (
        "49:00A6 4A:005B 5A:005D 69:0023 6A:00F1 7B:00D1 9F:20AC A1:00A8 B0:00A2 BA:005E BB:0021 BD:007E"
    ),
    "cp1146": (
        "4A:0024 5B:00A3 9F:20AC A1:00AF B0:00A2 B1:005B BA:005E BC:007E"
    ),
    "cp1147": (
        "44:0040 48:005C 4A:00B0 4F:0021 51:007B 54:007D 5A:00A7 5F:005E 6A:00F9 79:00B5 7B:00A3 7C:00E0 "
        "90:005B 9F:20AC A0:0060 A1:00A8 B0:00A2 B1:0023 B5:005D BA:00AC BB:007C BD:007E C0:00E9 D0:00E8 "
        "DD:00A6 E0:00E7"
    ),
    "cp1148": (
        "4A:005B 4F:0021 5A:005D 5F:005E 9F:20AC B0:00A2 BA:00AC BB:007C"
    ),
}


_ALIASES = {"ibm1047": "cp1047", "ibm-1047": "cp1047", "ebcdic": "cp037", "us-ascii": "ascii", "utf8": "utf-8",
            "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1"}


def _from_differences(page: str) -> str:
    chars = list(bytes(range(256)).decode("cp037"))
    for pair in _DIFFERENCES[page].split():
        code, point = pair.split(":")
        chars[int(code, 16)] = chr(int(point, 16))
    return "".join(chars)


def shipped_pages() -> list[str]:
    """Names of the code pages shipped here (not in Python's codecs)."""
    return list(_DIFFERENCES)


@dataclass(frozen=True)
class CodePage:
    """A single-byte code page (or UTF-8 text), with the tables the decoder needs.

    Attributes:
        name: The normalised name (``cp1047``, ``ascii``, ``utf-8`` …).
        chars: The character of each byte value (U+FFFD where undefined); empty for UTF-8.
        family: ``ebcdic`` or ``ascii``: how DISPLAY numbers, signs and spaces are spelled.
    """

    name: str
    chars: str
    family: Family

    @property
    def utf8(self) -> bool:
        """Text fields are UTF-8 (multi-byte): taken as they are."""
        return not self.chars

    @property
    def space(self) -> int:
        """The byte of a space."""
        return 0x40 if self.family == "ebcdic" else 0x20

    @property
    def zone(self) -> int:
        """The high nibble of an unsigned DISPLAY digit (``F`` in EBCDIC, ``3`` in ASCII)."""
        return 0xF if self.family == "ebcdic" else 0x3

    @property
    def plus(self) -> int:
        """The byte of ``+``."""
        return 0x4E if self.family == "ebcdic" else 0x2B

    @property
    def minus(self) -> int:
        """The byte of ``-``."""
        return 0x60 if self.family == "ebcdic" else 0x2D

    @property
    def point(self) -> int:
        """The byte of ``.``."""
        return 0x4B if self.family == "ebcdic" else 0x2E

    def encode(self, text: str) -> bytes:
        """``text`` in this code page (characters it lacks are left out; UTF-8: ASCII as it is)."""
        if self.utf8:
            return text.encode("ascii", "ignore")
        return bytes(self.chars.index(c) for c in text if c in self.chars)


def code_page(name: str) -> CodePage:
    """The code page of an ``encoding`` option value.

    Raises:
        LookupError: The name is neither a shipped code page nor a Python codec.
        ValueError: It is a multi-byte codec other than UTF-8, or spells digits neither as EBCDIC nor ASCII.
    """
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key in ("ibm037", "ibm-037", "ibm500", "ibm-500"):
        key = "cp" + key[-3:]
    if key in _DIFFERENCES:
        return CodePage(key, _from_differences(key), "ebcdic")
    info = codecs.lookup(key)
    if info.name == "utf-8":
        return CodePage("utf-8", "", "ascii")
    chars = bytes(range(256)).decode(info.name, errors="replace")
    if len(chars) != 256 or any(len(c.encode(info.name, errors="replace")) != 1 for c in "A0 "):
        raise ValueError(f"'{name}' is not a single-byte code page")
    digits = "0123456789".encode(info.name)
    if digits == bytes(range(0xF0, 0xFA)):
        family: Family = "ebcdic"
    elif digits == bytes(range(0x30, 0x3A)):
        family = "ascii"
    else:
        raise ValueError(f"'{name}' spells the digits neither as EBCDIC (X'F0'-X'F9') nor as ASCII (X'30'-X'39')")
    if " ".encode(info.name) != bytes([0x40 if family == "ebcdic" else 0x20]):
        raise ValueError(f"'{name}' has no space at the usual place of its family")
    return CodePage(info.name, chars, family)
