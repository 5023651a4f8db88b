"""Parsing a COBOL copybook into a record layout (byte offsets) and an Arrow schema.

Supported: levels 01-49 and 77 (66 and 88 are skipped), ``PIC``/``PICTURE`` with ``X``, ``A``, ``9``,
``S``, ``V`` and repeat counts, numeric-edited pictures (read as numbers; with ``B``, ``0`` or ``/`` as text),
``USAGE`` ``DISPLAY``,
``COMP``/``COMP-0``/``COMP-4``/``BINARY``/``COMP-5``, ``COMP-3``/``PACKED-DECIMAL`` (also on a group, inherited),
``COMP-1``/``COMP-2`` (floating point), ``PIC N`` (``NATIONAL``, UTF-16), the scaling symbol ``P``,
``SIGN [IS] LEADING|TRAILING [SEPARATE]``, ``OCCURS n [TIMES]`` and ``OCCURS m TO n [TIMES] DEPENDING ON x``,
``REDEFINES``, ``FILLER``, ``VALUE`` (ignored). Several 01 records in one copybook are alternative layouts of
the same record, as if each later one ``REDEFINES`` the first. Anything else is refused with the copybook's
line number.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa

from dativo.errors import ConfigError

Kind = Literal["group", "text", "zoned", "packed", "binary", "float", "national"]

MAX_DIGITS = 38
"""The most digits a numeric item may have: what an Arrow ``decimal128`` (and an Iceberg decimal) holds."""


def binary_size(digits: int) -> int:
    """Bytes of a binary (``COMP``) item of ``digits`` digits: 2, 4 or 8 as IBM COBOL stores them, and past 18
    digits the fewest bytes whose two's complement holds every value (9 for 19-21 … 16 for 36-38), the sizes of
    Micro Focus COBOL and of Cobrix."""
    if digits <= 18:
        return 2 if digits <= 4 else 4 if digits <= 9 else 8
    return ((10**digits - 1).bit_length() + 8) // 8
FloatFormat = Literal["IBM", "IEEE754"]

_HINT = "Fix the copybook, or tell the plugin's authors which COBOL clause it should support."
_USAGES: dict[str, Kind | None] = {
    "DISPLAY": None,
    "COMP": "binary", "COMPUTATIONAL": "binary", "COMP-4": "binary", "COMPUTATIONAL-4": "binary",
    "BINARY": "binary", "COMP-5": "binary", "COMPUTATIONAL-5": "binary",
    "COMP-0": "binary", "COMPUTATIONAL-0": "binary",  # some compilers' name for COMP (Cobrix reads it so)
    "COMP-3": "packed", "COMPUTATIONAL-3": "packed", "PACKED-DECIMAL": "packed",
    "COMP-1": "float", "COMPUTATIONAL-1": "float", "COMP-2": "float", "COMPUTATIONAL-2": "float",
    "NATIONAL": "national",
}
_FLOAT_SIZES = {"COMP-1": 4, "COMPUTATIONAL-1": 4, "COMP-2": 8, "COMPUTATIONAL-2": 8}
# Refused, and why: addresses mean nothing off the host; DBCS (DISPLAY-1) needs a double-byte code page.
_UNSUPPORTED_USAGES = {"POINTER", "INDEX", "DISPLAY-1", "FUNCTION-POINTER", "PROCEDURE-POINTER"}
_CLAUSES = {"PIC", "PICTURE", "USAGE", "REDEFINES", "OCCURS", "VALUE", "VALUES", "SIGN", "LEADING",
            "TRAILING", "SYNC", "SYNCHRONIZED", "JUSTIFIED", "JUST", "BLANK", "GLOBAL", "EXTERNAL",
            *_USAGES, *_UNSUPPORTED_USAGES}
_DIRECTIVES = {"EJECT", "SKIP1", "SKIP2", "SKIP3"}
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[^\s'\"]+")


@dataclass
class Item:
    """One data description entry of the copybook.

    Attributes:
        level: Its level number (1-49, 77).
        name: The COBOL name (``FILLER`` for fillers and unnamed items).
        line: Where it is described (1-based line of the copybook).
        kind: ``group`` or how an elementary item is stored.
        digits: Digits of a numeric item (integer and fraction part).
        scale: Digits after the implied decimal point ``V``.
        signed: Whether the picture has ``S``.
        sign_leading: The sign is on (or before) the first digit instead of the last.
        sign_separate: The sign is a separate ``+``/``-`` byte.
        edited: A numeric-edited DISPLAY number (``-9(6).99``, ``Z(5)9CR``): signs, a decimal point,
            suppressed zeros and currency signs spelled out in the data.
        occurs: Repetition count (the maximum for ``OCCURS … DEPENDING ON``), if any; 0 is a legal count of
            a variable-size table in a concrete layout.
        occurs_min: The least count of ``OCCURS m TO n``.
        depending_on: The name of the counter of ``OCCURS … DEPENDING ON``.
        float_format: How COMP-1/COMP-2 are stored (``IBM`` hexadecimal or ``IEEE754``).
        redefines: The name of the item this one redefines, if any.
        size: Bytes of one occurrence.
        offset: Byte offset of the first occurrence, relative to the parent's start.
        absolute: Byte offset of the first occurrence in the record (for messages).
        children: Subordinate items of a group.
    """

    level: int
    name: str
    line: int
    kind: Kind = "group"
    usage: Kind | None = None
    picture: str = ""
    digits: int = 0
    scale: int = 0
    signed: bool = False
    sign_leading: bool = False
    sign_separate: bool = False
    edited: bool = False
    occurs: int | None = None
    occurs_min: int = 0
    depending_on: str | None = None
    float_format: FloatFormat = "IBM"
    redefines: str | None = None
    size: int = 0
    offset: int = 0
    absolute: int = 0
    children: list[Item] = field(default_factory=list)
    selected: list[Item] = field(default_factory=list)
    """The children that become columns: no fillers, one alternative of each REDEFINES group."""

    @property
    def filler(self) -> bool:
        """Whether this item is skipped (``FILLER``)."""
        return self.name.upper() == "FILLER"

    @property
    def column(self) -> str:
        """The Arrow column name: lower case, ``-`` becomes ``_``."""
        return self.name.lower().replace("-", "_")

    @property
    def extent(self) -> int:
        """Bytes of all occurrences."""
        return self.size * (1 if self.occurs is None else self.occurs)

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of one occurrence (see the README's type mapping)."""
        if self.kind == "group":
            return pa.struct([pa.field(c.column, c.arrow_list_type()) for c in self.selected])
        if self.kind in ("text", "national"):
            return pa.string()
        if self.kind == "float":
            return pa.float32() if self.size == 4 and self.float_format == "IEEE754" else pa.float64()
        if self.kind == "binary":
            unsigned = not self.signed
            if self.scale < 0:  # PIC 9(n)P…: the stored integer × 10^-scale
                digits = self.stored_digits - self.scale
                return pa.int64() if digits <= 18 else pa.decimal128(digits, 0)
            if self.scale == 0:
                if self.size > 8 or (self.size == 8 and unsigned):
                    return pa.decimal128(self.stored_digits, 0)
                bits = self.size * 8 * (2 if unsigned else 1)
                return {16: pa.int16(), 32: pa.int32(), 64: pa.int64()}[bits]
            return pa.decimal128(max(self.stored_digits, self.scale), self.scale)
        if self.scale <= 0 and self.precision <= 18:
            digits = self.precision
            return pa.int16() if digits <= 4 else pa.int32() if digits <= 9 else pa.int64()
        return pa.decimal128(self.precision, max(0, self.scale))

    @property
    def stored_digits(self) -> int:
        """Decimal digits a binary item's bytes can hold, whatever its PIC says (``TRUNC(BIN)``), at most
        :data:`MAX_DIGITS` (16 bytes hold 39: the values beyond 38 digits are invalid)."""
        if self.kind != "binary":
            return 0
        return min(MAX_DIGITS, len(str(2 ** (8 * self.size - (1 if self.signed else 0)) - 1)))

    @property
    def precision(self) -> int:
        """Decimal digits of the value: the stored digits and any scaling positions ``P``."""
        return self.digits - self.scale if self.scale < 0 else max(self.digits, self.scale)

    def arrow_list_type(self) -> pa.DataType:
        """The Arrow type of the column: a list when the item ``OCCURS``."""
        return pa.list_(self.arrow_type()) if self.occurs is not None else self.arrow_type()


@dataclass
class Layout:
    """A parsed copybook: the record's columns, its length and its Arrow schema.

    Attributes:
        record: A group item whose ``selected`` children are the columns.
        length: Record length in bytes (the longest alternative layout).
        schema: The Arrow schema of the decoded batches.
    """

    record: Item
    length: int
    schema: pa.Schema
    root: Item | None = None
    picks: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()

    def items(self) -> list[Item]:
        """Every item of the copybook, depth first."""
        out: list[Item] = []
        stack = [self.root or self.record]
        while stack:
            item = stack.pop()
            out.append(item)
            stack.extend(reversed(item.children))
        return out

    def find(self, name: str) -> Item | None:
        """The first item named ``name`` (COBOL name, any case)."""
        return next((i for i in self.items() if i.name.upper() == name.upper()), None)

    def tables(self) -> list[Item]:
        """The ``OCCURS … DEPENDING ON`` items, in record order."""
        return [i for i in self.items() if i.depending_on]

    def concrete(self, counts: dict[str, int]) -> Layout:
        """The layout of records whose variable-size tables (by item name) hold ``counts`` entries: later
        fields move up (``variable_size_occurs``). The schema stays the declared one."""
        root = copy.deepcopy(self.root)
        assert root is not None
        for item in _walk(root):
            if item.depending_on:
                item.occurs = counts[item.name.upper()]
        _layout(root, "<layout>", set(self.picks), set(), 0, set(self.segments))
        record = _record_of(root)
        return Layout(record=record, length=root.size, schema=self.schema, root=root, picks=self.picks,
                      segments=self.segments)


def _walk(item: Item) -> list[Item]:
    out = [item]
    for child in item.children:
        out += _walk(child)
    return out


def _record_of(root: Item) -> Item:
    if len(root.selected) == 1 and root.selected[0].kind == "group" and root.selected[0].occurs is None:
        return root.selected[0]  # the usual 01 RECORD: its children are the columns
    return root


def _fail(source: str, line: int, message: str) -> ConfigError:
    return ConfigError(f"copybook {source}, line {line}: {message}", hint=_HINT)


def _statements(text: str, source: str) -> list[tuple[int, list[str]]]:
    """Split the copybook into period-terminated statements of tokens, each with its first line."""
    # A transfer from the host often ends the file with Ctrl-Z (X'1A'); other control characters are blanks.
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", text.replace("\x1a", ""))
    lines = text.splitlines()
    # Fixed format (sequence area in columns 1-6, indicator in 7, code in 8-72) when every line's first six
    # columns are blank or a sequence number; otherwise free format (a copybook typed without margins).
    fixed = all(ln[:6].isspace() or ln[:6].isdigit() for ln in lines if ln.strip())
    statements: list[tuple[int, list[str]]] = []
    tokens: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        if fixed:
            indicator = raw[6:7]
            if indicator in ("*", "/"):
                continue
            code = raw[7:72]
        else:
            code = raw
            if code.lstrip().startswith("*"):
                continue
        code = code.split("*>", 1)[0]  # inline comment
        for token in _TOKEN.findall(code):
            if not tokens:
                start = number
            end = token.endswith(".") and not token.startswith(("'", '"'))
            token = token.rstrip(".") if end else token
            if token:
                tokens.append(token)
            if end and tokens:
                statements.append((start, tokens))
                tokens = []
    if tokens:
        if tokens[0].upper() in _DIRECTIVES:
            return statements
        raise _fail(source, start, f"the entry '{' '.join(tokens[:4])}' does not end with a period")
    return statements


def _picture(item: Item, picture: str, source: str) -> None:
    """Fill in the kind, digits, scale and size of an elementary item from its PICTURE string."""
    expanded = re.sub(r"(.)\((\d+)\)", lambda m: m[1] * int(m[2]), picture.upper())
    if "(" in expanded or ")" in expanded:
        raise _fail(source, item.line, f"PIC {picture} of {item.name} is not a valid picture string")
    item.picture = picture
    if item.usage == "float":
        raise _fail(source, item.line, f"{item.name} is COMP-1/COMP-2 (floating point), which takes no PIC clause")
    if item.usage == "national" or re.fullmatch(r"N+", expanded):
        if not re.fullmatch(r"N+", expanded):
            raise _fail(source, item.line, f"{item.name}: USAGE NATIONAL is read for PIC N(n) only (national "
                        "numbers are not supported)")
        item.kind, item.size = "national", 2 * len(expanded)
        return
    numeric = re.fullmatch(r"(S?)(9*)(?:V(9*))?", expanded)
    # The scaling symbol P: positions of the value that are not stored (9(3)PP = hundreds; VPP9(3) = 0.00ddd).
    leading_p = re.fullmatch(r"(S?)V?(P+)(9+)", expanded)
    trailing_p = re.fullmatch(r"(S?)(9+)(P+)V?", expanded)
    if (numeric and (numeric[2] or numeric[3])) or leading_p or trailing_p:
        if leading_p:
            item.signed, item.digits = bool(leading_p[1]), len(leading_p[3])
            item.scale = len(leading_p[2]) + item.digits
        elif trailing_p:
            item.signed, item.digits = bool(trailing_p[1]), len(trailing_p[2])
            item.scale = -len(trailing_p[3])
        else:
            assert numeric is not None
            item.signed = bool(numeric[1])
            item.scale = len(numeric[3] or "")
            item.digits = len(numeric[2]) + item.scale
        item.kind = item.usage or "zoned"
        if item.digits > MAX_DIGITS:
            raise _fail(source, item.line, f"PIC {picture} of {item.name} has {item.digits} digits; at most "
                        f"{MAX_DIGITS} are supported (the most an Arrow decimal128 holds)")
        if item.kind == "binary":
            item.size = binary_size(item.digits)
        binary = item.kind == "binary"
        if "P" in expanded and max(item.precision, item.stored_digits - item.scale if binary else 0) > MAX_DIGITS:
            raise _fail(source, item.line, f"PIC {picture} of {item.name}: with its scaling positions P the value "
                        f"has more than {MAX_DIGITS} digits (the most an Arrow decimal128 holds)")
        if item.kind == "packed":
            item.size = item.digits // 2 + 1
        elif item.kind != "binary":
            item.size = item.digits + (1 if item.sign_separate else 0)
        return
    edited = _edited_number(expanded) if item.usage is None else None
    if edited is not None:
        item.kind, item.edited = "zoned", True
        item.digits, item.scale, item.size, item.signed = edited
        if item.digits > MAX_DIGITS:
            raise _fail(source, item.line, f"PIC {picture} of {item.name} has {item.digits} digits; at most "
                        f"{MAX_DIGITS} are supported (the most an Arrow decimal128 holds)")
        return
    if item.usage is not None:
        raise _fail(source, item.line, f"{item.name} is not numeric (PIC {picture}), so it cannot be "
                    f"{'COMP-3' if item.usage == 'packed' else 'COMP/BINARY'}")
    if not expanded or not re.fullmatch(r"[XA9BZ0/,.+\-*$CRDBEP]+", expanded) or expanded.count("V") > 0:
        raise _fail(source, item.line, f"PIC {picture} of {item.name} is not a picture string this reader knows")
    item.kind = "text"  # alphanumeric, alphabetic, or edited with insertion characters (B, 0, /): read as text
    item.size = len(expanded)


_EDITED = re.compile(r"S?[9Z*+\-.,$V]+(?:CR|DB)?")


def _edited_number(expanded: str) -> tuple[int, int, int, bool] | None:
    """``(digits, scale, size, signed)`` of a numeric-edited picture whose data reads back as a number: digit
    positions ``9``, ``Z``, ``*``, a floating ``+``, ``-`` or ``$`` string, a sign (``+``, ``-``, ``CR``, ``DB``,
    or ``S``: overpunched, as in the explicit-decimal ``S9(3).99`` Cobrix reads), ``.`` or ``V``, and ``,``.
    ``None`` for anything else (insertion characters ``B``, ``0``, ``/`` make it text)."""
    if not _EDITED.fullmatch(expanded) or expanded.count(".") + expanded.count("V") > 1:
        return None
    body, size = expanded, 0
    if body.endswith(("CR", "DB")):
        body, size = body[:-2], 2
    overpunched = body.startswith("S")
    body = body.removeprefix("S")
    floating = {c for c in "+-$" if body.count(c) > 1}
    if overpunched and (body.count("+") or body.count("-")) or body.count("+") and body.count("-"):
        return None
    digits = scale = 0
    after, seen = False, set()
    for symbol in body:
        if symbol == "V":
            after = True
            continue
        size += 1
        if symbol == ".":
            after = True
        elif symbol in "9Z*" or (symbol in floating and symbol in seen):
            digits += 1
            scale += after
        elif symbol in floating:
            seen.add(symbol)
    signed = overpunched or "+" in body or "-" in body or expanded.endswith(("CR", "DB"))
    return (digits, scale, size, signed) if digits else None


def _entry(start: int, tokens: list[str], source: str, inherited: Kind | None) -> Item | None:
    """Parse one data description entry; ``None`` for entries that describe no bytes (66, 88, directives)."""
    head = tokens[0].upper()
    if head in _DIRECTIVES:
        return None
    if not head.isdigit():
        raise _fail(source, start, f"expected a level number, found '{tokens[0]}'")
    level = int(head)
    if level in (66, 88):
        return None
    if not (1 <= level <= 49 or level == 77):
        raise _fail(source, start, f"level number {level} is not valid (use 01-49 or 77)")
    rest = tokens[1:]
    name = "FILLER"
    if rest and rest[0].upper() not in _CLAUSES:
        name = rest.pop(0)
    item = Item(level=level, name=name, line=start, usage=inherited)
    picture: str | None = None
    i = 0

    def take(what: str) -> str:
        nonlocal i
        if i >= len(rest):
            raise _fail(source, start, f"{name}: {what} expected after {rest[i - 1]}")
        i += 1
        return rest[i - 1]

    def skip_word(*words: str) -> None:
        nonlocal i
        if i < len(rest) and rest[i].upper() in words:
            i += 1

    while i < len(rest):
        word = take("a clause").upper()
        if word in ("PIC", "PICTURE"):
            skip_word("IS")
            picture = take("a picture string")
        elif word == "USAGE" or word in _USAGES or word in _UNSUPPORTED_USAGES:
            if word == "USAGE":
                skip_word("IS")
                word = take("a usage").upper()
            if word in _UNSUPPORTED_USAGES or word not in _USAGES:
                raise _fail(source, start, f"USAGE {word} of {name} is not supported")
            item.usage = _USAGES[word]
            if word in _FLOAT_SIZES:
                item.size = _FLOAT_SIZES[word]
        elif word == "REDEFINES":
            item.redefines = take("the name of the redefined item")
        elif word == "OCCURS":
            count = take("a count")
            least = None
            if i < len(rest) and rest[i].upper() == "TO":
                i += 1
                least, count = count, take("the largest count")
            if not count.isdigit() or int(count) < 1 or (least is not None and not least.isdigit()):
                raise _fail(source, start, f"OCCURS {count} of {name} is not a positive count")
            skip_word("TIMES")
            if i < len(rest) and rest[i].upper() == "DEPENDING":
                i += 1
                skip_word("ON")
                item.depending_on = take("the name of the counter")
            elif least is not None:
                raise _fail(source, start, f"{name}: OCCURS {least} TO {count} needs DEPENDING ON a counter")
            item.occurs_min = int(least) if least is not None else 0
            if item.occurs_min > int(count):
                raise _fail(source, start, f"{name}: OCCURS {least} TO {count}: the least count is larger")
            item.occurs = int(count)
            while i < len(rest) and rest[i].upper() not in _CLAUSES:  # ASCENDING KEY ..., INDEXED BY ...
                i += 1
        elif word in ("VALUE", "VALUES"):
            while i < len(rest) and rest[i].upper() not in _CLAUSES:
                i += 1
        elif word in ("SIGN", "LEADING", "TRAILING"):
            if word == "SIGN":
                skip_word("IS")
                word = take("LEADING or TRAILING").upper()
            if word not in ("LEADING", "TRAILING"):
                raise _fail(source, start, f"{name}: SIGN {word} is not LEADING or TRAILING")
            item.sign_leading = word == "LEADING"
            if i < len(rest) and rest[i].upper() == "SEPARATE":
                i += 1
                item.sign_separate = True
                skip_word("CHARACTER")
        elif word in ("SYNC", "SYNCHRONIZED"):
            raise _fail(source, start, f"{name}: SYNCHRONIZED (alignment slack bytes) is not supported")
        elif word in ("JUSTIFIED", "JUST"):
            skip_word("RIGHT")
        elif word == "BLANK":
            skip_word("WHEN")
            skip_word("ZERO", "ZEROS", "ZEROES")
        elif word in ("GLOBAL", "EXTERNAL"):
            pass
        else:
            raise _fail(source, start, f"unexpected '{rest[i - 1]}' in the description of {name}")
    if picture is not None:
        _picture(item, picture, source)
    elif item.usage == "float" and item.size:
        item.kind = "float"
    elif item.sign_separate or item.sign_leading:
        raise _fail(source, start, f"{name}: a SIGN clause needs a numeric PIC")
    return item


def _layout(item: Item, source: str, picks: set[str], used: set[str], base: int,
            segments: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Compute sizes and offsets of a group's children and choose the alternatives that become columns.

    ``picks`` name the one alternative of a REDEFINES to read; ``segments`` name alternatives that are all
    read (a wide table of a multi-segment file, each null where another segment is in the record).
    """
    item.absolute = base
    item.selected = []
    if item.kind != "group":
        return
    if not item.children:
        raise _fail(source, item.line, f"{item.name} has neither a PIC clause nor subordinate items")
    cursor = 0
    extent: dict[int, int] = {}  # id of a redefined item -> bytes its redefinition group spans
    alternatives: dict[int, list[Item]] = {}
    by_name: dict[str, Item] = {}
    for child in item.children:
        if child.redefines:
            target = by_name.get(child.redefines.upper())
            if target is None:
                raise _fail(source, child.line, f"{child.name} REDEFINES {child.redefines}, which is not an "
                            f"earlier item at the same level of {item.name}")
            child.offset = target.offset
            _layout(child, source, picks, used, base + child.offset, segments)
            extent[id(target)] = max(extent[id(target)], child.extent)
            alternatives[id(target)].append(child)
            cursor = max(cursor, target.offset + extent[id(target)])
        else:
            child.offset = cursor
            _layout(child, source, picks, used, base + cursor, segments)
            extent[id(child)] = child.extent
            alternatives[id(child)] = [child]
            by_name[child.name.upper()] = child
            cursor += child.extent
    item.size = cursor
    columns: dict[str, Item] = {}
    for child in item.children:
        group = alternatives.get(id(child))
        if group is None:
            continue
        chosen = [c for c in group if c.name.upper() in picks]
        if len(chosen) > 1:
            raise ConfigError(f"options.redefines picks both {chosen[0].name} and {chosen[1].name}, which "
                              "redefine the same bytes", hint="Pick at most one alternative of each REDEFINES.")
        wide = [c for c in group if c.name.upper() in segments]
        used.update(c.name.upper() for c in chosen + wide)
        if wide and not chosen:
            picked = wide
        else:
            # The first alternative that has fields: a first layout of FILLER only must not hide the others.
            readable = [c for c in group if not (c.filler or (c.kind == "group" and not c.selected))]
            picked = chosen or readable[:1]
        for pick in picked:
            if pick.filler or (pick.kind == "group" and not pick.selected):
                continue
            if pick.column in columns:
                raise _fail(source, pick.line, f"{pick.name} gives the column '{pick.column}', like "
                            f"{columns[pick.column].name} on line {columns[pick.column].line}")
            columns[pick.column] = pick
            item.selected.append(pick)


def parse_copybook(text: str, source: str = "<copybook>", redefines: list[str] | tuple[str, ...] = (),
                   segments: list[str] | tuple[str, ...] = (), float_format: FloatFormat = "IBM") -> Layout:
    """Parse a copybook into a :class:`Layout`.

    Args:
        text: The copybook's text.
        source: Its name, for messages.
        redefines: Names of REDEFINES alternatives to read instead of the first layout (the redefined item).
        segments: Names of REDEFINES alternatives that are all read (segments of a multi-segment file).
        float_format: How COMP-1/COMP-2 are stored: ``IBM`` hexadecimal floating point or ``IEEE754``.

    Raises:
        ConfigError: The copybook does not parse or uses something unsupported (the message has the line).
    """
    root = Item(level=0, name="RECORD", line=1)
    stack: list[Item] = [root]
    top: list[Item] = []
    for start, tokens in _statements(text, source):
        level = int(tokens[0]) if tokens[0].isdigit() else 0
        if tokens[0].upper() in _DIRECTIVES or level in (66, 88):
            continue  # no bytes of their own (and 88 may follow any item: it must not end a group)
        while len(stack) > 1 and stack[-1].level >= (1 if level == 77 else level):
            stack.pop()
        parent_usage = stack[-1].usage if len(stack) > 1 else None
        entry = _entry(start, tokens, source, parent_usage)
        if entry is None:
            continue
        entry.float_format = float_format
        parent = stack[-1]
        if parent.kind != "group":
            raise _fail(source, start, f"{parent.name} (line {parent.line}) has a PIC clause, so it cannot "
                        f"contain the level {entry.level:02d} item {entry.name}")
        if parent is root and entry.level == 1:
            if top and not entry.redefines:
                entry.redefines = top[0].name  # several 01 records: alternative layouts of one record
            top.append(entry)
        parent.children.append(entry)
        stack.append(entry)
    if not root.children:
        raise _fail(source, 1, "no data description entries found")
    picks = {name.upper() for name in redefines}
    wide = {name.upper() for name in segments}
    used: set[str] = set()
    _layout(root, source, picks, used, 0, wide)
    unknown = sorted((picks | wide) - used)
    if unknown:
        raise ConfigError(f"{'options.redefines' if picks - used else 'options.redefine_segment_id_map'} names "
                          f"{', '.join(unknown)}, which is not a REDEFINES alternative in copybook {source}",
                          hint="Name an item that has a REDEFINES clause, or the item it redefines.")
    if not root.selected:
        raise _fail(source, 1, "the record has no fields to read (only FILLER)")
    _check_tables(root, source)
    record = _record_of(root)
    schema = pa.schema([pa.field(c.column, c.arrow_list_type()) for c in record.selected])
    return Layout(record=record, length=root.size, schema=schema, root=root, picks=frozenset(picks),
                  segments=frozenset(wide))


def _check_tables(root: Item, source: str) -> None:
    """Every ``DEPENDING ON`` names a numeric elementary item that comes before its table."""
    items = _walk(root)
    for table in (i for i in items if i.depending_on):
        assert table.depending_on is not None
        counter = next((i for i in items if i.name.upper() == table.depending_on.upper()), None)
        if counter is None or counter.kind not in ("zoned", "packed", "binary") or counter.scale:
            raise _fail(source, table.line, f"{table.name} OCCURS … DEPENDING ON {table.depending_on}, which is "
                        "not an integer field of the copybook")
        if counter.absolute >= table.absolute or table in _ancestors(root, counter):
            raise _fail(source, table.line, f"{table.name} OCCURS … DEPENDING ON {counter.name}, which does not "
                        "come before the table")


def _ancestors(root: Item, target: Item) -> list[Item]:
    """The items enclosing ``target``, outermost first."""
    def path(item: Item) -> list[Item] | None:
        if item is target:
            return []
        for child in item.children:
            found = path(child)
            if found is not None:
                return [item, *found]
        return None
    return path(root) or []


def load_copybook(path: Path, redefines: list[str] | tuple[str, ...] = (), segments: list[str] | tuple[str, ...] = (),
                  float_format: FloatFormat = "IBM") -> Layout:
    """Read and parse a copybook file.

    Raises:
        ConfigError: The file cannot be read or does not parse.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read copybook {path}: {exc.strerror}",
                          hint=f"Check options.copybook (relative paths start at {Path.cwd()}).") from None
    return parse_copybook(text, str(path), redefines, segments, float_format)
