"""Vectorised decoding of fixed-width mainframe records into Arrow arrays.

A batch of records is copied once into a flat ``uint8`` buffer. Every field is then decoded over all rows
at once through strided numpy views of that buffer (one view element per record, or per occurrence inside
an ``OCCURS``):

- numbers read up to 8 bytes of a field as one big-endian ``uint64`` per row and turn zoned or packed
  digits into binary with SWAR arithmetic (mask the digit nibbles, then combine lanes: ×10, ×100, ×10⁴,
  ×10⁸), validating every nibble with the same lane arithmetic; up to 18 digits the magnitude stays one
  ``uint64`` from there to the Arrow buffer, and padding (spaces, low-values) is looked for only among the
  values that failed those checks;
- binary integers are the same views read as big-endian ``int16/32/64``;
- text goes through one 256-entry table to Latin-1 (``bytes.translate``, a ``width``-byte copy a row to gather
  it), Arrow trims the padding byte-wise, and only the values left are turned into UTF-8 (as they are when
  ASCII); values holding characters beyond U+00FF (``€``) are decoded again through the code page alone;
- COMP-1/COMP-2 are the same views read as IBM hexadecimal (or IEEE 754) floats; NATIONAL is UTF-16 code
  units turned into UTF-8 with lane arithmetic.

Python loops run over fields and 8-byte chunks of a field, never over rows. The exceptions are the values the
fast path finds invalid: a DISPLAY number padded with spaces or low-values, or (in ASCII files) spelled with
an explicit sign or decimal point, is parsed again value by value (``_lenient``), only for those values; so is
a text value holding a character beyond U+00FF.

Nulls: a field that starts past the end of a shorter record is null, one cut off by it holds what is there
(the missing bytes read as spaces); a DISPLAY or packed number that is all spaces or all low-values (X'00') is
null, and so is a text field of low-values only (unless ``trim`` is ``none``). An invalid number is reported
as an :class:`Issue`, and with ``invalid="null"`` it is also null in its field.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dativo_cobol.codepages import CodePage, code_page
from dativo_cobol.copybook import MAX_DIGITS, Item, Layout
from dativo_cobol.records import PAD

Trim = Literal["right", "left", "both", "none"]
Invalid = Literal["null", "reject_record", "fail"]
_PRESENT = 1 << 40  # "all bytes present" in a frame's avail
_PAD = PAD  # bytes before and after a batch, so any field can be read as the low bytes of an 8-byte word
_LANES = 0x0F0F0F0F0F0F0F0F
_SIX = 0x0606060606060606
_HIGH = 0xF0F0F0F0F0F0F0F0


@dataclass(frozen=True)
class _Frame:
    """Where one field's occurrences are in the batch buffer: a strided view with one element per value.

    ``shape`` is ``(records, occurs, …)`` and ``strides`` the byte steps along it; ``base`` is the buffer
    offset of the first occurrence in the first record; ``avail`` (same shape, or ``None`` for fixed-length
    records) the bytes of the record present from that occurrence on.
    """

    buffer: np.ndarray
    base: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    avail: np.ndarray | None

    @property
    def count(self) -> int:
        return int(np.prod(self.shape))

    def at(self, offset: int) -> _Frame:
        """The frame of a child ``offset`` bytes into this item."""
        return _Frame(self.buffer, self.base + offset, self.shape, self.strides,
                      None if self.avail is None else self.avail - offset)

    def repeat(self, count: int, size: int) -> _Frame:
        """The frame of the occurrences of an ``OCCURS count`` item of ``size`` bytes."""
        avail = None if self.avail is None else self.avail[..., None] - np.arange(count) * size
        return _Frame(self.buffer, self.base, (*self.shape, count), (*self.strides, size), avail)

    def view(self, dtype: str | np.dtype, offset: int = 0) -> np.ndarray:
        """One value of ``dtype`` per element, read at ``offset`` (may be negative, up to -8), flattened."""
        view = np.ndarray(self.shape, np.dtype(dtype), self.buffer, self.base + offset, self.strides)
        return view.reshape(-1)

    def bytes(self, size: int) -> np.ndarray:
        """The ``size`` bytes of each element, one row each."""
        view = np.ndarray((*self.shape, size), np.uint8, self.buffer, self.base, (*self.strides, 1))
        return view.reshape(-1, size)

    def word(self, end: int, size: int) -> np.ndarray:
        """Bytes ``[end - size, end)`` of each element (``size`` ≤ 8) as a big-endian unsigned integer."""
        value = self.view(">u8", end - 8).astype(np.uint64)
        return value if size == 8 else value & np.uint64((1 << (8 * size)) - 1)


@dataclass
class Issue:
    """Records where one field holds bytes that are not a valid value of its type.

    Attributes:
        item: The field.
        bad: One flag per decoded element (records × occurrences of the enclosing OCCURS).
        raw: The field's bytes of one element, by element index.
        occurs: ``(count, size)`` of each enclosing OCCURS, outermost first.
        what: What the bytes should have been (``packed decimal`` …).
    """

    item: Item
    bad: np.ndarray
    raw: Callable[[int], bytes]
    occurs: tuple[tuple[int, int], ...]
    what: str

    def records(self, rows: int) -> np.ndarray:
        """One flag per record: does any occurrence of the field hold bad bytes."""
        return self.bad.reshape(rows, -1).any(axis=1)

    def describe(self, row: int, rows: int) -> str:
        """Where and what the first bad occurrence in record ``row`` (0-based in the batch) is."""
        per = self.bad.size // rows
        first = int(np.argmax(self.bad.reshape(rows, -1)[row]))
        element = row * per + first
        offset = self.item.absolute
        indexes = []
        for count, size in reversed(self.occurs):
            first, index = divmod(first, count)
            indexes.append(index)
            offset += index * size
        label = self.item.name + "".join(f"({i + 1})" for i in reversed(indexes))
        return (f"field {label} (bytes {offset + 1}-{offset + self.item.size} of the record) holds "
                f"X'{self.raw(element).hex().upper()}', which is not a valid {self.what}")


class Decoder:
    """Decodes batches of records of one :class:`Layout`.

    Args:
        layout: The parsed copybook.
        encoding: Code page of text and DISPLAY numbers (a name, or a :class:`CodePage`).
        trim: Which padding (spaces and low-values) to drop from text fields: ``right``, ``left``, ``both``,
            ``none``; ``True``/``False`` mean ``right``/``none``.
        invalid: ``null``: an invalid number is also null in its field (still reported as an issue).
    """

    def __init__(self, layout: Layout, encoding: str | CodePage = "cp037", trim: Trim | bool = "right",
                 invalid: Invalid = "fail") -> None:
        self.layout = layout
        self.code_page = encoding if isinstance(encoding, CodePage) else code_page(encoding)
        self.trim: Trim = "right" if trim is True else "none" if trim is False else trim
        self.invalid = invalid
        self._chars = self.code_page.chars or "".join(map(chr, range(256)))
        self._latin1, self._marker = _latin1_table(self._chars)
        self._root: _Frame | None = None
        self._active: dict[str, np.ndarray] = {}

    def decode(self, records: np.ndarray, avail: np.ndarray | None = None,
               active: dict[str, np.ndarray] | None = None) -> tuple[pa.RecordBatch, list[Issue]]:
        """Decode a batch.

        Args:
            records: ``uint8`` array of shape ``(rows, layout.length)``.
            avail: Bytes actually present in each record (variable-length records): a field that starts past
                it is null; one cut off by it holds what is there.
            active: Per REDEFINES alternative (upper-case COBOL name) the records whose segment it is; it is
                null in the others.

        Returns:
            The batch and the fields whose bytes did not decode (empty when all is well).
        """
        rows, length = records.shape
        if avail is not None and (not rows or int(avail.min()) >= length):
            avail = None  # every record holds the whole layout: no field needs its own presence mask
        found = padded_buffer(records) if avail is None else None
        if found is not None:  # the records sit between zero pads already (fixed-length files): no copy
            buffer, start = found
        else:
            buffer, start = np.empty(rows * length + 2 * _PAD, np.uint8), _PAD  # one pass: only the pads zeroed
            buffer[:_PAD] = buffer[_PAD + rows * length:] = 0
            buffer[_PAD: _PAD + rows * length].reshape(rows, length)[...] = records  # strided records too
        if avail is not None and rows and int(avail.min()) < length:
            matrix = buffer[_PAD: _PAD + rows * length].reshape(rows, length)
            matrix[np.arange(length)[None, :] >= avail[:, None]] = self.code_page.space
        frame = _Frame(buffer, start, (rows,), (length,), None if avail is None else avail.astype(np.int64))
        self._root, self._active = frame, active or {}
        issues: list[Issue] = []
        columns = [self._column(c, frame, (), issues) for c in self.layout.record.selected]
        self._root, self._active = None, {}
        return pa.RecordBatch.from_arrays(columns, schema=self.layout.schema), issues

    # --- structure ------------------------------------------------------------------------------------

    def _column(self, item: Item, parent: _Frame, occurs: tuple[tuple[int, int], ...],
                issues: list[Issue]) -> pa.Array:
        frame = parent.at(item.offset)
        inactive = None
        if item.name.upper() in self._active:
            active = np.broadcast_to(self._active[item.name.upper()].reshape(
                (-1,) + (1,) * (len(frame.shape) - 1)), frame.shape)
            inactive = ~active.reshape(-1)
            base = np.full(frame.shape, _PRESENT, np.int64) if frame.avail is None else frame.avail
            frame = _Frame(frame.buffer, frame.base, frame.shape, frame.strides, np.where(active, base, -1))
        if item.occurs is None:
            array = self._item(item, frame, occurs, issues)
            if inactive is not None and inactive.any() and item.kind == "group":
                array = pa.StructArray.from_arrays(array.flatten(), fields=list(array.type), mask=pa.array(inactive))
            return array
        if item.occurs == 0:  # a variable-size table that is empty in every record of this group
            offsets = pa.array(np.zeros(parent.count + 1, np.int32))
            return pa.ListArray.from_arrays(offsets, pa.array([], item.arrow_type()))
        counts = self._counts(item, frame, issues) if item.depending_on else None
        table = frame.repeat(item.occurs, item.size)
        if counts is not None:  # the unused entries of the table are absent: no value, no issue
            used = np.arange(item.occurs) < counts.reshape(frame.shape)[..., None]
            avail = np.full(table.shape, _PRESENT, np.int64) if table.avail is None else table.avail
            table = _Frame(table.buffer, table.base, table.shape, table.strides, np.where(used, avail, -1))
        values = self._item(item, table, (*occurs, (item.occurs, item.size)), issues)
        if counts is None:
            offsets = pa.array(np.arange(0, parent.count * item.occurs + 1, item.occurs, dtype=np.int32))
        else:
            values = values.filter(pa.array(used.reshape(-1)))
            offsets = pa.array(np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int32))
        mask = None if inactive is None or not inactive.any() else pa.array(inactive)
        return pa.ListArray.from_arrays(offsets, values, type=pa.list_(values.type), mask=mask)

    def _counts(self, table: Item, frame: _Frame, issues: list[Issue]) -> np.ndarray:
        """The entries in use of an ``OCCURS … DEPENDING ON`` table: its counter, one per table instance."""
        root = self.layout.root
        assert root is not None and self._root is not None and table.depending_on is not None
        path = _path(root, table.depending_on)
        counter = path[-1]
        where = self._root
        dims: tuple[tuple[int, int], ...] = ()
        for item in path[1:]:
            where = where.at(item.offset)
            if item is not counter and item.occurs is not None:
                where = where.repeat(item.occurs, item.size)
                dims = (*dims, (item.occurs, item.size))
        found: list[Issue] = []
        values = self._item(counter, where, dims, found).to_numpy(zero_copy_only=False)
        values = np.nan_to_num(values.astype(np.float64), nan=0).astype(np.int64)
        if len(where.shape) > len(frame.shape) or where.shape != frame.shape[: len(where.shape)]:
            raise ValueError(f"the counter {counter.name} of {table.name} is inside a table the OCCURS is not in")
        values = np.broadcast_to(values.reshape(where.shape + (1,) * (len(frame.shape) - len(where.shape))),
                                 frame.shape).reshape(-1)
        present = np.ones(len(values), bool) if frame.avail is None else frame.avail.reshape(-1) > 0
        wrong = ((values < table.occurs_min) | (values > (table.occurs or 0))) & present
        if wrong.any():
            matrix = where.bytes(counter.size)
            per = len(values) // max(1, where.count)
            issues.append(Issue(counter, wrong, lambda e: matrix[e // per].tobytes(), dims,
                                f"count for {table.name} (OCCURS {table.occurs_min} TO {table.occurs})"))
        return np.clip(np.where(present, values, 0), 0, table.occurs)

    def _item(self, item: Item, frame: _Frame, occurs: tuple[tuple[int, int], ...],
              issues: list[Issue]) -> pa.Array:
        if item.kind == "group":
            children = [self._column(c, frame, occurs, issues) for c in item.selected]
            fields = [pa.field(c.column, a.type) for c, a in zip(item.selected, children, strict=True)]
            return pa.StructArray.from_arrays(children, fields=fields)
        cut = item.kind in ("text", "national", "zoned")  # these hold what is there when cut off
        valid = None if frame.avail is None else (frame.avail > 0 if cut else frame.avail >= item.size).reshape(-1)
        if item.kind == "text":
            return self._text(frame.bytes(item.size), valid)
        if item.kind == "national":
            return self._national(frame.bytes(item.size), valid)
        if item.kind == "binary":
            array, bad = _binary(item, frame, valid)
            if bad is not None and valid is not None:
                bad &= valid
            if bad is None or not bad.any():
                return array
            matrix = frame.bytes(item.size)
            issues.append(Issue(item, bad, lambda e: matrix[e].tobytes(), occurs, "binary number of at most 38 digits"))
            if self.invalid != "null":
                return array
            return _with_validity(array, ~bad if valid is None else valid & ~bad)
        if item.kind == "float":
            return _float(item, frame, valid)
        if item.kind == "packed":
            parts, neg, bad = _packed(item, frame)
            what = "packed decimal (COMP-3)"
            if bad.any():
                matrix = frame.bytes(item.size)
                blank = np.zeros(len(bad), bool)
                rows = np.flatnonzero(bad)
                blank[rows] = _padding(matrix[rows], self.code_page.space).all(axis=1)
                bad &= ~blank
                valid = ~blank if valid is None else valid & ~blank
        else:
            if item.edited:
                parts, neg, bad, blank = self._edited(item, frame)
            else:
                parts, neg, bad, blank = _zoned(item, frame, self.code_page)
            what = f"numeric-edited number (PIC {item.picture})" if item.edited else "zoned decimal"
            if bad.any():
                bad, blank = _lenient(item, frame.bytes(item.size), self.code_page, parts, neg, bad, blank)
            if blank.any():
                valid = ~blank if valid is None else valid & ~blank
        if valid is not None:
            bad &= valid
        if bad.any():
            matrix = frame.bytes(item.size)
            issues.append(Issue(item, bad, lambda e: matrix[e].tobytes(), occurs, what))
            if self.invalid == "null":
                valid = ~bad if valid is None else valid & ~bad
        return _number(item, parts, neg, valid)

    # --- text -----------------------------------------------------------------------------------------

    def _text(self, matrix: np.ndarray, valid: np.ndarray | None) -> pa.Array:
        rows, width = matrix.shape
        raw = _field_bytes(matrix)
        if self.code_page.utf8:
            return self._finish(_utf8(raw, rows, width), _codes(raw, rows, width), raw, valid)
        # One table pass to Latin-1 (every character up to U+00FF is one byte there). The padding is trimmed
        # there, byte-wise, and only what is left goes to UTF-8: ASCII is UTF-8 as it is, the rest through
        # CPython's Latin-1 → UTF-8 (a copy, then the encoder's ASCII-run fast path), each value's offset grown
        # by the bytes ≥ 0x80 before it. Characters beyond U+00FF became a marker byte: only the values holding
        # one are decoded again through the code page's own table.
        latin = raw.translate(self._latin1)
        offsets = pa.py_buffer(np.arange(0, (rows + 1) * width, width, dtype=np.int32))
        if self._marker is not None and latin.find(self._marker) >= 0:
            return self._finish(self._beyond_latin1(raw, latin, rows, width), _codes(raw, rows, width), raw,
                                valid)
        array = pa.Array.from_buffers(pa.string(), rows, [None, offsets, pa.py_buffer(latin)])
        valid = self._nulls(raw, rows, width, valid)
        array = _trim(array, self.trim, ascii=True)
        if not latin.isascii():  # trimming drops padding only, never a byte ≥ 0x80
            array = _latin1_to_utf8(array, _high(latin, rows, width))
        return _with_validity(array, valid)

    def _edited(self, item: Item, frame: _Frame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Numeric-edited numbers, as :func:`_zoned` returns them: the text parsed by one regular expression
        over the batch. Values it does not take (an overpunched sign, more than 18 digits, anything odd) are
        left invalid for :func:`_lenient` to read one by one or refuse."""
        count = frame.count
        parts = [np.zeros(count, np.uint64) for _ in range(1 if item.digits <= 18 else -(-item.digits // 8))]
        neg, bad, blank = np.zeros(count, bool), np.ones(count, bool), np.zeros(count, bool)
        if item.digits > 18:
            return parts, neg, bad, blank
        matrix = frame.bytes(item.size)
        punched = np.zeros(count, bool)
        if item.signed and not re.search(r"[+\-]|CR|DB", item.picture.upper()):  # S: overpunched, Cobrix-style
            matrix = np.array(matrix)
            column = matrix[:, 0 if item.sign_leading else -1]
            cp = self.code_page
            if cp.family == "ebcdic":
                zone, digit = column >> 4, column & 0x0F
                over = ((zone >= 0xA) & (zone <= 0xE)) & (digit <= 9)
                punched = over & ((zone == 0xB) | (zone == 0xD))
                column[over] = 0xF0 | digit[over]
            else:
                digit = _ASCII_DIGIT[column]
                over = (digit != 0xFF) & ((column < 0x30) | (column > 0x39))
                punched = over & _ASCII_NEG[column]
                column[over] = 0x30 | digit[over]
        texts = pc.utf8_trim(self._text(matrix, None), " \x00")  # padding: spaces or low-values
        found = pc.extract_regex(texts, _EDITED_VALUE)
        whole = pc.replace_substring(found.field("whole"), ",", "")
        point = pc.not_equal(found.field("point"), "")
        fraction = found.field("fraction")
        digits = pc.binary_join_element_wise(
            whole, pc.if_else(point, pc.utf8_rpad(fraction, max(item.scale, 0), "0"), ""), "")
        length = pc.utf8_length(digits)
        ok = pc.and_(pc.and_(pc.less_equal(length, item.digits), pc.greater(length, 0)),
                     pc.or_(pc.invert(point), pc.less_equal(pc.utf8_length(fraction), max(item.scale, 0))))
        ok = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
        minus = pc.or_(pc.equal(found.field("lead"), "-"), pc.is_in(found.field("trail"), pa.array(["-", "CR", "DB"])))
        minus = pc.fill_null(minus, False).to_numpy(zero_copy_only=False) | punched
        if not item.signed:
            ok &= ~minus
        # spaces or low-values (null text), a zero suppressed or check-protected away
        blank = pc.fill_null(pc.match_substring_regex(texts, rf"^[*{_CURRENCY},.]*$"), True).to_numpy(
            zero_copy_only=False)
        rows = np.flatnonzero(ok)
        parts[0][rows] = pc.cast(pc.take(digits, pa.array(rows)), pa.uint64()).to_numpy(zero_copy_only=False)
        neg[rows] = minus[rows]
        bad = ~ok & ~blank
        return parts, neg, bad, blank

    def _beyond_latin1(self, raw: bytes, latin: bytes, rows: int, width: int) -> pa.Array:
        """UTF-8 of fixed-width values some of which hold characters beyond U+00FF (untrimmed)."""
        array = _latin1_to_utf8(pa.Array.from_buffers(pa.string(), rows, [
            None, pa.py_buffer(np.arange(0, (rows + 1) * width, width, dtype=np.int32)), pa.py_buffer(latin)]),
            _high(latin, rows, width))
        wide = np.unique(np.flatnonzero(np.frombuffer(latin, np.uint8) == self._marker[0]) // width)
        mask = np.zeros(rows, bool)
        mask[wide] = True
        again = [codecs.charmap_decode(raw[r * width:(r + 1) * width], "replace", self._chars)[0]
                 for r in wide.tolist()]
        return pc.replace_with_mask(array, pa.array(mask), pa.array(again, pa.string()))

    def _nulls(self, raw: bytes, rows: int, width: int, valid: np.ndarray | None) -> np.ndarray | None:
        """``valid`` and not low-values only (unless trim is none)."""
        if self.trim != "none" and raw.find(b"\x00") >= 0:
            lows = ~_codes(raw, rows, width).any(axis=1)
            valid = ~lows if valid is None else valid & ~lows
        return valid

    def _finish(self, array: pa.Array, codes: np.ndarray, raw: bytes, valid: np.ndarray | None) -> pa.Array:
        """Trim the padding (spaces, low-values); a field of low-values only is null unless trim is none."""
        if self.trim != "none" and raw.find(b"\x00") >= 0:
            lows = ~codes.any(axis=1)
            valid = ~lows if valid is None else valid & ~lows
        return _trim(_with_validity(array, valid), self.trim)

    def _national(self, matrix: np.ndarray, valid: np.ndarray | None) -> pa.Array:
        """UTF-16 big-endian (``PIC N``) to UTF-8, vectorised for the Basic Multilingual Plane."""
        rows, width = matrix.shape
        units = np.ascontiguousarray(matrix).view(">u2").astype(np.uint32)
        if ((units >= 0xD800) & (units < 0xE000)).any():  # surrogate pairs: let Python's codec do it
            texts = [np.ascontiguousarray(matrix[r]).tobytes().decode("utf-16-be", errors="replace")
                     for r in range(rows)]
            array = pa.array(texts, pa.string())
        else:
            widths = np.where(units < 0x80, 1, np.where(units < 0x800, 2, 3)).astype(np.uint8)
            three = np.empty((*units.shape, 3), np.uint8)
            three[..., 0] = np.where(widths == 1, units, np.where(widths == 2, 0xC0 | (units >> 6),
                                                                   0xE0 | (units >> 12)))
            three[..., 1] = np.where(widths == 2, 0x80 | (units & 0x3F), 0x80 | ((units >> 6) & 0x3F))
            three[..., 2] = 0x80 | (units & 0x3F)
            data = three[np.arange(3) < widths[..., None]]
            offsets = np.zeros(rows + 1, np.int32)
            np.cumsum(widths.sum(axis=1, dtype=np.int64), out=offsets[1:])
            array = pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
        lows = (units != 0).astype(np.uint8)
        return self._finish(array, lows, b"\x00" if not lows.all() else b"", valid)


def padded_buffer(records: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The array ``records`` is a contiguous part of and its offset there, when ``_PAD`` zero bytes surround it
    (a buffer :mod:`dativo_cobol.records` read a fixed-length file into); else ``None``."""
    root = records
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root is records or not records.flags.c_contiguous or root.dtype != np.uint8 or root.ndim != 1 \
            or not root.flags.c_contiguous:
        return None
    start = records.ctypes.data - root.ctypes.data
    end = start + records.nbytes
    if start < _PAD or end + _PAD > root.size or root[start - _PAD: start].any() or root[end: end + _PAD].any():
        return None
    return root, start


def _codes(raw: bytes, rows: int, width: int) -> np.ndarray:
    """The bytes of ``rows`` fixed-width values as a read-only ``(rows, width)`` matrix."""
    return np.frombuffer(raw, np.uint8).reshape(rows, width)


def _trim(array: pa.Array, trim: Trim, ascii: bool = False) -> pa.Array:
    """Drop spaces and low-values on the ``trim`` side(s); ``ascii``: byte-wise (the values may be Latin-1)."""
    if trim == "none":
        return array
    kernel = {"right": "rtrim", "left": "ltrim", "both": "trim"}[trim]
    return pc.call_function(f"{'ascii' if ascii else 'utf8'}_{kernel}", [array],
                            pc.TrimOptions(characters=" \x00"))


def _latin1_to_utf8(array: pa.Array, high: np.ndarray) -> pa.Array:
    """A string array whose bytes are Latin-1 (no nulls) → the same values in UTF-8; ``high``: the bytes ≥ 0x80
    of each value (each becomes two)."""
    rows = len(array)
    offsets = np.frombuffer(array.buffers()[1], np.int32, rows + 1, 4 * array.offset)
    first, last = int(offsets[0]), int(offsets[-1])
    shifted = np.empty(rows + 1, np.int64)
    shifted[0] = 0
    np.cumsum(high, out=shifted[1:])
    shifted += offsets - first
    data = codecs.latin_1_decode(memoryview(array.buffers()[2])[first:last])[0].encode("utf-8")
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(shifted.astype(np.int32)),
                                                     pa.py_buffer(data)])


def _high(latin: bytes, rows: int, width: int) -> np.ndarray:
    """How many bytes ≥ 0x80 each of ``rows`` fixed-width values holds."""
    return np.bincount(np.flatnonzero(np.frombuffer(latin, np.uint8) >= 0x80) // width, minlength=rows)


def _with_validity(array: pa.Array, valid: np.ndarray | None) -> pa.Array:
    """``array`` (no nulls) with the values where ``valid`` is false null."""
    if valid is None or valid.all():
        return array
    if array.offset:  # the validity bitmap starts at the first value
        array = pa.concat_arrays([array])
    return pa.Array.from_buffers(array.type, len(array), [_validity(valid), *array.buffers()[1:]],
                                 offset=array.offset)


def _latin1_table(chars: str) -> tuple[bytes, bytes | None]:
    """A ``bytes.translate`` table from a code page to Latin-1, and the marker byte it writes for the codes whose
    character is beyond U+00FF (``None`` when there are none): a Latin-1 byte no code stands for, nor a pad."""
    points = [ord(c) for c in chars]
    used = {p for p in points if p <= 0xFF}
    free = [b for b in range(0xFF, 0, -1) if b not in used and b != 0x20]
    if all(p <= 0xFF for p in points):
        return bytes(points), None
    # 256 codes and at least one beyond U+00FF leave a Latin-1 byte unused; only if it is 0x00 or the space
    # is there none to spare, and then every character goes the slow way (U+FFFD is beyond U+00FF too).
    marker = free[0] if free else 0xFF
    table = bytes(p if p <= 0xFF and free else marker for p in points)
    return table, bytes([marker])


def _field_bytes(matrix: np.ndarray) -> bytes:
    """The bytes of a ``(rows, width)`` view, row after row: one ``width``-byte copy a row (not byte by byte)."""
    if matrix.strides[-1] == 1 and matrix.shape[-1] > 0:
        return matrix.view(np.dtype((np.void, matrix.shape[-1]))).tobytes()
    return matrix.tobytes()


def _utf8(raw: bytes, rows: int, width: int) -> pa.Array:
    """Fixed-width UTF-8 fields as they are; a field that is not valid UTF-8 gets U+FFFD where it breaks."""
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    array = pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(raw)])
    try:
        array.validate(full=True)
        return array
    except pa.ArrowInvalid:
        return pa.array([raw[r * width:(r + 1) * width].decode("utf-8", errors="replace") for r in range(rows)],
                        pa.string())


def _path(root: Item, name: str) -> list[Item]:
    """The items from ``root`` down to the first item named ``name``."""
    def walk(item: Item) -> list[Item] | None:
        if item.name.upper() == name.upper() and item is not root:
            return [item]
        for child in item.children:
            found = walk(child)
            if found is not None:
                return [item, *found]
        return None
    found = walk(root)
    assert found is not None
    return found


def _padding(matrix: np.ndarray, space: int) -> np.ndarray:
    """Bytes that pad a value: spaces and low-values (X'00')."""
    return (matrix == space) | (matrix == 0)


# --- numbers ----------------------------------------------------------------------------------------------


def _float(item: Item, frame: _Frame, valid: np.ndarray | None) -> pa.Array:
    """COMP-1 (4 bytes) and COMP-2 (8 bytes): IBM hexadecimal floating point, or IEEE 754 big-endian."""
    arrow_type = item.arrow_type()
    if item.float_format == "IEEE754":
        values = frame.view(f">f{item.size}").astype(np.float32 if item.size == 4 else np.float64)
    else:
        # sign bit, 7-bit exponent of 16 biased by 64, then a 24- or 56-bit fraction: (-1)^s × 0.f × 16^(e-64).
        # The fraction converts to float64 with one rounding (exact for COMP-1); the power of two is exact.
        word = frame.view(f">u{item.size}").astype(np.uint64)
        bits = 8 * item.size
        fraction = word & np.uint64((1 << (bits - 8)) - 1)
        exponent = ((word >> np.uint64(bits - 8)) & np.uint64(0x7F)).astype(np.int64)
        values = np.ldexp(fraction.astype(np.float64), (4 * (exponent - 64) - (bits - 8)).astype(np.int32))
        values = np.where((word >> np.uint64(bits - 1)) != 0, -values, values)
    return pa.array(values, type=arrow_type, mask=None if valid is None else ~valid)


def _binary(item: Item, frame: _Frame, valid: np.ndarray | None) -> tuple[pa.Array, np.ndarray | None]:
    """Big-endian two's complement (signed) or unsigned integers: 2, 4 or 8 bytes, or 9 to 16 past 18 digits.

    Returns:
        ``(array, bad)``: ``bad`` flags the 16-byte values beyond 38 digits (``None`` when there can be none).
    """
    arrow_type = item.arrow_type()
    rows = frame.count
    if item.size > 8:
        limbs, neg, bad = _big_binary(frame.bytes(item.size), item.signed)
    else:
        big = np.dtype(f">{'i' if item.signed else 'u'}{item.size}")
        values = frame.view(big).astype(big.newbyteorder("="))
        if pa.types.is_integer(arrow_type):  # PIC 9(n)P… (in 18 digits): the scaling positions are zeros
            factor = 10**-item.scale if item.scale < 0 else 1
            return pa.array(values.astype(arrow_type.to_pandas_dtype()) * factor, type=arrow_type,
                            mask=None if valid is None else ~valid), None
        if item.scale >= 0:
            wide = np.zeros((rows, 2), np.int64)
            if values.dtype == np.uint64:
                wide[:, 0] = values.view(np.int64)  # high word 0: an unsigned value is never negative
            else:
                wide[:, 0] = values
                wide[:, 1] = wide[:, 0] >> 63
            return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), pa.py_buffer(wide)]), None
        values = values.astype(np.int64 if item.signed else np.uint64)
        neg = values < 0
        magnitude = np.where(neg, -values, values).view(np.uint64)  # -(-2^63) wraps to 2^63, right as uint64
        limbs, bad = _limbs([magnitude]), None
    _times_ten(limbs, max(0, -item.scale))  # PIC 9(n)P… past 18 digits
    return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), pa.py_buffer(_decimal128(limbs, neg))]), bad


def _big_binary(matrix: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """9- to 16-byte big-endian integers → ``(magnitude limbs, negative flags, flags of values past 38 digits)``."""
    rows, size = matrix.shape
    neg = (matrix[:, 0] >= 0x80) if signed else np.zeros(rows, bool)
    extended = np.zeros((rows, 16), np.uint8)
    extended[neg, : 16 - size] = 0xFF  # sign extension
    extended[:, 16 - size:] = matrix
    limbs = np.ascontiguousarray(extended[:, ::-1]).view("<u4").T.astype(np.uint64)  # 32-bit limbs, low first
    if neg.any():
        limbs = _negated(limbs, neg)
    return limbs, neg, _at_least(limbs, 10**MAX_DIGITS)


def _combine(pairs: np.ndarray) -> np.ndarray:
    """Byte lanes holding 0..99 each (most significant first) → the number they spell (up to 16 digits)."""
    x = ((pairs >> 8) & 0x00FF00FF00FF00FF) * 100 + (pairs & 0x00FF00FF00FF00FF)
    x = ((x >> 16) & 0x0000FFFF0000FFFF) * 10_000 + (x & 0x0000FFFF0000FFFF)
    return (x >> 32) * 100_000_000 + (x & 0xFFFFFFFF)


_CURRENCY = "$£€¥"
"""Currency signs an edited number may show (the picture's ``$`` is the code page's own sign, ``£`` in cp285)."""
_EDITED_VALUE = (rf"^[*{_CURRENCY} ]*(?P<lead>[+-]?)[*{_CURRENCY} ]*(?P<whole>[0-9][0-9,]*|)(?P<point>\.?)"
                 r"(?P<fraction>[0-9]*) *(?P<trail>[+-]|CR|DB|) *$")
"""A numeric-edited value as text: check protection, currency, a sign before or after (or CR, DB), digits with
grouping commas, a decimal point."""
# ASCII overpunch: the last (or first) digit of a signed DISPLAY number carries the sign: { A-I for +0..+9,
# } J-R for -0..-9; a plain digit is positive. Byte value -> digit (0xFF: not a signed digit), negative flag.
_ASCII_DIGIT = np.full(256, 0xFF, np.uint8)
_ASCII_NEG = np.zeros(256, bool)
for _d in range(10):
    _ASCII_DIGIT[0x30 + _d] = _d
    _ASCII_DIGIT[0x7B if _d == 0 else 0x40 + _d] = _d  # { A..I
    _ASCII_DIGIT[0x7D if _d == 0 else 0x49 + _d] = _d  # } J..R
    _ASCII_NEG[0x7D if _d == 0 else 0x49 + _d] = True


def _zoned(item: Item, frame: _Frame, cp: CodePage) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Zoned decimals (one digit a byte, zone F or 3; sign overpunched on the last or first digit, or separate).

    Returns:
        ``(parts, neg, bad, blank)``: the magnitude (one array up to 18 digits, else base-10⁸ parts, least
        significant first), negative flags, invalid flags, and flags of fields that are all spaces or all
        low-values.
    """
    count = frame.count
    size, start, digits, position = item.size, 0, item.digits, -1
    high = _HIGH if cp.family == "ebcdic" else 0x3030303030303030
    fix: tuple[int, np.ndarray] | None = None  # ASCII overpunch: the sign byte's position and its digit byte
    if item.sign_separate:
        sign = frame.view(np.uint8, 0 if item.sign_leading else size - 1)
        start = 1 if item.sign_leading else 0
        neg = sign == cp.minus
        bad = (sign != cp.plus) & ~neg
    else:
        position = 0 if item.sign_leading else size - 1
        byte = frame.view(np.uint8, position)
        if cp.family == "ascii":
            digit = _ASCII_DIGIT[byte]
            bad = digit == 0xFF
            neg = _ASCII_NEG[byte] if item.signed else np.zeros(count, bool)
            if not item.signed:
                bad = (byte < 0x30) | (byte > 0x39)
            fix = (position, (0x30 | (digit & 0x0F)).astype(np.uint64))
        else:
            zone = byte >> 4
            if item.signed:  # C, A, E, F: positive; D, B: negative
                neg = (zone == 0xD) | (zone == 0xB)
                bad = zone < 0xA
            else:
                neg = np.zeros(count, bool)
                bad = (zone != 0xF) & (zone != 0xC)
    parts: list[np.ndarray] = []
    for end in range(start + digits, start, -8):  # 8-byte chunks from the right
        width = min(8, end - start)
        word = frame.word(end, width)
        mask = (1 << (8 * width)) - 1
        if fix is not None and (end - 1 - fix[0]) in range(width):
            shift = np.uint64(8 * (end - 1 - fix[0]))
            word = (word & ~(np.uint64(0xFF) << shift)) | (fix[1] << shift)
        zones = word & (_HIGH & mask)
        if fix is None and not item.sign_separate and (end - 1 - position) in range(width):  # the overpunch
            zones |= np.uint64((high & 0xFF) << (8 * (end - 1 - position)))
        nibbles = word & _LANES
        bad |= (zones != (high & mask)) | (((nibbles + _SIX) & _HIGH) != 0)
        # 16-bit lanes: high byte × 10 + low byte, so every byte pair spells 0..99; then the usual combine.
        pairs = ((nibbles >> 8) & 0x00FF00FF00FF00FF) * 10 + (nibbles & 0x00FF00FF00FF00FF)
        parts.append(_combine_pairs_of_digits(pairs))
    # A field of spaces or low-values fails the digit checks, so only the invalid values can be padding.
    blank = np.zeros(count, bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        matrix = frame.bytes(size)[rows]
        blank[rows] = (matrix == cp.space).all(axis=1) | (matrix == 0).all(axis=1)
    if item.digits <= 18:  # one int64-sized magnitude instead of base-10⁸ parts
        parts = [_joined(parts)]
    return parts, neg, bad & ~blank, blank


def _lenient(item: Item, matrix: np.ndarray, cp: CodePage, parts: list[np.ndarray], neg: np.ndarray,
             bad: np.ndarray, blank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse again, value by value, the DISPLAY numbers the fast path found invalid: padded with spaces or
    low-values on either side, an explicit leading or trailing ``+``/``-``, an explicit decimal point. Fills
    ``parts`` and ``neg`` in place for those that parse.

    Returns:
        ``(bad, blank)`` updated.
    """
    bad, blank = bad.copy(), blank.copy()
    for element in np.flatnonzero(bad):
        parsed = _parse_display(bytes(matrix[element]), item, cp)
        if parsed is None:
            continue
        if parsed == "blank":
            blank[element], bad[element] = True, False
            continue
        magnitude, negative = parsed
        if item.digits <= 18:
            parts[0][element] = magnitude
        for i in range(len(parts) if item.digits > 18 else 0):
            parts[i][element] = (magnitude // 10 ** (8 * i)) % 10**8
        neg[element] = negative
        bad[element] = False
    return bad, blank


def _parse_display(raw: bytes, item: Item, cp: CodePage) -> tuple[int, bool] | str | None:
    """One DISPLAY number read leniently: ``(unscaled magnitude, negative)``, ``"blank"``, or ``None``."""
    core = raw.strip(bytes([cp.space, 0]))
    negative = False
    if item.edited:  # check protection, grouping and currency are for the eye; CR and DB mean negative
        for credit in (cp.encode("CR"), cp.encode("DB")):
            if core.endswith(credit):
                negative, core = True, core[: -len(credit)].rstrip(bytes([cp.space]))
        core = core.translate(None, cp.encode("*," + _CURRENCY)).strip(bytes([cp.space]))
    if not core:
        return "blank"
    if core[:1] in (bytes([cp.plus]), bytes([cp.minus])):
        negative, core = core[0] == cp.minus, core[1:]
    elif core[-1:] in (bytes([cp.plus]), bytes([cp.minus])):
        negative, core = core[-1] == cp.minus, core[:-1]
    elif core and item.signed:
        for index in (0, len(core) - 1) if item.sign_leading else (len(core) - 1, 0):
            byte = core[index]
            if cp.family == "ebcdic" and byte >> 4 in (0xA, 0xB, 0xC, 0xD, 0xE) and byte & 0xF <= 9:
                negative = byte >> 4 in (0xB, 0xD)
                core = core[:index] + bytes([0xF0 | (byte & 0xF)]) + core[index + 1:]
                break
            if cp.family == "ascii" and _ASCII_DIGIT[byte] != 0xFF and not 0x30 <= byte <= 0x39:
                negative = bool(_ASCII_NEG[byte])
                core = core[:index] + bytes([0x30 | int(_ASCII_DIGIT[byte])]) + core[index + 1:]
                break
    if item.edited:  # a fixed sign may stand apart from the digits: "+  123", "  123 -"
        core = core.strip(bytes([cp.space]))
    if negative and not item.signed:
        return None
    integer, point, fraction = core.partition(bytes([cp.point]))
    if point and (item.scale <= 0 or len(fraction) > item.scale):
        return None
    digits = integer + fraction + (bytes([cp.zone << 4]) * (item.scale - len(fraction)) if point else b"")
    if not digits or any(b >> 4 != cp.zone or b & 0xF > 9 for b in digits) or len(digits) > item.digits:
        return None
    return int("".join(str(b & 0xF) for b in digits)), negative


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Base-10⁸ parts (least significant first) of at most 18 digits → one ``uint64`` magnitude."""
    value = parts[0]
    for i, part in enumerate(parts[1:], 1):
        value = value + part * np.uint64(10 ** (8 * i))
    return value


def _combine_pairs_of_digits(x: np.ndarray) -> np.ndarray:
    """16-bit lanes holding 0..99 (most significant first) → the number (up to 8 digits)."""
    x = ((x >> 16) & 0x0000FFFF0000FFFF) * 100 + (x & 0x0000FFFF0000FFFF)
    return (x >> 32) * 10_000 + (x & 0xFFFFFFFF)


def _packed(item: Item, frame: _Frame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Packed decimals (two digits a byte, the sign in the last nibble).

    Returns:
        ``(parts, neg, bad)``: the magnitude (one array up to 18 digits, else base-10⁸ parts, least
        significant first), negative flags and invalid flags.
    """
    count, size = frame.count, item.size
    parts16: list[np.ndarray] = []  # base 10^15 for the last chunk (15 digits + sign), then base 10^16
    bad = np.zeros(count, bool)
    sign = np.zeros(count, np.uint64)
    for end in range(size, 0, -8):
        width = min(8, end)
        word = frame.word(end, width)
        if end == size:
            sign = word & 0xF
            word = word >> 4
        low, high = word & _LANES, (word >> 4) & _LANES
        bad |= (((low + _SIX) | (high + _SIX)) & _HIGH) != 0
        parts16.append(_combine(high * 10 + low))
    if item.signed:
        neg = (sign == 0xD) | (sign == 0xB)
        bad |= sign < 0xA
    else:
        neg = np.zeros(count, bool)
        bad |= (sign != 0xF) & (sign != 0xC)
    if item.digits <= 18:  # chunk 0 holds 15 digits, chunk 1 (if any) at most the next 3
        value = parts16[0] if len(parts16) == 1 else parts16[0] + parts16[1] * np.uint64(10**15)
        # An even digit count leaves a pad nibble that must be 0: a value with more digits than the PIC is bad.
        bad |= value >= np.uint64(10**item.digits)
        return [value], neg, bad
    # Re-base to 10^8 parts, like zoned: chunk 0 holds 15 digits, every later one the next 16.
    parts = [np.zeros(count, np.uint64) for _ in range(-(-(2 * size - 1) // 8))]
    for chunk, value in enumerate(parts16):
        index, shift = divmod(15 + 16 * (chunk - 1) if chunk else 0, 8)
        if shift:  # the chunk's lowest digits complete part `index`
            keep = np.uint64(10 ** (8 - shift))
            parts[index] += (value % keep) * np.uint64(10**shift)
            value, index = value // keep, index + 1
        while index < len(parts):
            parts[index] += value % np.uint64(10**8)
            value, index = value // np.uint64(10**8), index + 1
    # An even digit count leaves a pad nibble that must be 0: a value with more digits than the PIC is bad.
    bad |= _too_big(parts, item.digits)
    return parts, neg, bad


def _too_big(parts: list[np.ndarray], digits: int) -> np.ndarray:
    """Flags of values with more than ``digits`` digits (base-10⁸ parts, least significant first)."""
    index, within = divmod(digits, 8)
    big = np.zeros(len(parts[0]), bool)
    for i, part in enumerate(parts):
        if i > index or (i == index and within == 0):
            big |= part != 0
        elif i == index:
            big |= part >= 10**within
    return big


def _number(item: Item, parts: list[np.ndarray], neg: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """An Arrow integer or decimal array from magnitudes (see :func:`_zoned`) and signs; may reuse ``parts``."""
    rows = len(neg)
    arrow_type = item.arrow_type()
    if item.precision <= 18:
        values = parts[0].view(np.int64)  # below 10^18: the same bits
        if item.scale < 0:  # PIC 9(n)P…: the scaling positions are zeros that are not stored
            values *= 10 ** -item.scale
        np.negative(values, out=values, where=neg)
        if pa.types.is_integer(arrow_type):
            return pa.array(values.astype(arrow_type.to_pandas_dtype()), type=arrow_type,
                            mask=None if valid is None else ~valid)
        wide = np.empty((rows, 2), np.int64)  # decimal128: little-endian two's complement, 16 bytes
        wide[:, 0] = values
        wide[:, 1] = values >> 63
        return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), pa.py_buffer(wide)])
    # More than 18 digits (or scaled past them): 128-bit arithmetic on 32-bit limbs.
    limbs = _limbs(parts)
    _times_ten(limbs, max(0, -item.scale))
    return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), pa.py_buffer(_decimal128(limbs, neg))])


_MASK32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def _limbs(parts: list[np.ndarray]) -> np.ndarray:
    """Base-10⁸ parts (least significant first; a lone part may be any ``uint64``) → a magnitude as four
    32-bit limbs in ``uint64`` lanes, least significant first: shape ``(4, rows)``."""
    limbs = np.zeros((4, len(parts[0])), np.uint64)
    if len(parts) == 1:
        limbs[0] = parts[0] & _MASK32
        limbs[1] = parts[0] >> _32
        return limbs
    limbs[0] = parts[-1]
    for part in reversed(parts[:-1]):  # Horner's rule: below 10^8, a part adds to the lowest limb alone
        limbs *= np.uint64(10**8)
        limbs[0] += part
        _carry(limbs)
    return limbs


def _times_ten(limbs: np.ndarray, power: int) -> None:
    """Multiply limbs by ``10^power`` in place, at most 10^9 (below 2^32) a step so no lane overflows."""
    while power > 0:
        step = min(power, 9)
        power -= step
        limbs *= np.uint64(10**step)
        _carry(limbs)


def _carry(limbs: np.ndarray) -> None:
    for i in range(len(limbs) - 1):
        limbs[i + 1] += limbs[i] >> _32
        limbs[i] &= _MASK32
    limbs[-1] &= _MASK32  # nothing carries out of 128 bits: every value is below 10^38


def _negated(limbs: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The limbs with the values flagged ``neg`` in two's complement (the others as they are)."""
    out = limbs ^ _MASK32
    out[0] += np.uint64(1)
    _carry(out)
    return np.where(neg, out, limbs)


def _at_least(limbs: np.ndarray, bound: int) -> np.ndarray:
    """Flags of magnitudes ``>= bound``, compared limb by limb from the least significant."""
    result = np.ones(limbs.shape[1], bool)
    for i, limb in enumerate(limbs):
        word = np.uint64((bound >> (32 * i)) & 0xFFFFFFFF)
        result = (limb > word) | ((limb == word) & result)
    return result


def _decimal128(limbs: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Magnitude limbs and signs → Arrow ``decimal128`` values: little-endian two's complement, 16 bytes."""
    wide = np.empty((limbs.shape[1], 2), np.uint64)
    low, high = limbs[0] | (limbs[1] << _32), limbs[2] | (limbs[3] << _32)
    if neg.any():  # -(high·2^64 + low) = ~high + (1 if low is 0) · 2^64 + (2^64 - low)
        low, high = np.where(neg, -low, low), np.where(neg, ~high + (low == 0), high)
    wide[:, 0], wide[:, 1] = low, high
    return wide


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    return None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
