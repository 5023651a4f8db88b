"""Vectorised decoding of fixed-width mainframe records into Arrow arrays.

A batch of records is copied once into a flat ``uint8`` buffer. Every field is then decoded over all rows
at once through strided numpy views of that buffer (one view element per record, or per occurrence inside
an ``OCCURS``):

- numbers read up to 8 bytes of a field as one big-endian ``uint64`` per row and turn zoned or packed
  digits into binary with SWAR arithmetic (mask the digit nibbles, then combine lanes: ×10, ×100, ×10⁴,
  ×10⁸), validating every nibble with the same lane arithmetic;
- binary integers are the same views read as big-endian ``int16/32/64``;
- text goes through a 256-entry translation table (``bytes.translate``), and Arrow trims trailing spaces.

Python loops run over fields and 8-byte chunks of a field, never over rows.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dativo_cobol.copybook import Item, Layout

_EBCDIC_SPACE = 0x40  # blank numeric DISPLAY fields (all spaces) are read as null
_EBCDIC_PLUS, _EBCDIC_MINUS = 0x4E, 0x60  # SIGN SEPARATE characters
_NO_SINGLE_BYTE = 0xFF  # never a byte of UTF-8: marks a code point that needs 2 or 3 UTF-8 bytes
_PAD = 8  # bytes before and after a batch, so any field can be read as the low bytes of an 8-byte word
_TEN_18 = pa.scalar(Decimal(10**18), pa.decimal128(19, 0))
_LANES = 0x0F0F0F0F0F0F0F0F
_SIX = 0x0606060606060606
_HIGH = 0xF0F0F0F0F0F0F0F0


def single_byte_tables(encoding: str) -> tuple[bytes, np.ndarray, np.ndarray, int]:
    """Translation tables from a single-byte code page to UTF-8.

    Returns:
        ``(one, three, width, space)``: for ``bytes.translate``, the UTF-8 byte of each code (0xFF when it
        needs more than one); the up to three UTF-8 bytes of each code and their count; the space's code.

    Raises:
        LookupError: The encoding is unknown.
        ValueError: It is not a single-byte code page.
    """
    codecs.lookup(encoding)
    every = bytes(range(256)).decode(encoding, errors="replace")
    if len(every) != 256 or any(len(c.encode(encoding, errors="replace")) != 1 for c in "A0 é€"):
        raise ValueError(f"'{encoding}' is not a single-byte code page")
    three = np.zeros((256, 3), np.uint8)
    width = np.zeros(256, np.uint8)
    for code in range(256):
        text = bytes([code]).decode(encoding, errors="replace")  # undefined codes become U+FFFD
        if len(text) != 1:
            raise ValueError(f"'{encoding}' is not a single-byte code page")
        utf8 = text.encode("utf-8")
        three[code, : len(utf8)] = np.frombuffer(utf8, np.uint8)
        width[code] = len(utf8)
    one = np.where(width == 1, three[:, 0], _NO_SINGLE_BYTE).astype(np.uint8)
    spaces = np.flatnonzero((width == 1) & (three[:, 0] == 0x20))
    return one.tobytes(), three, width, int(spaces[0]) if len(spaces) else -1


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
        encoding: Code page of the text fields (a single-byte Python codec such as ``cp037``).
        trim: Drop trailing spaces of text fields.
    """

    def __init__(self, layout: Layout, encoding: str = "cp037", trim: bool = True) -> None:
        self.layout = layout
        self.trim = trim
        self._one, self._three, self._width, _ = single_byte_tables(encoding)

    def decode(self, records: np.ndarray, avail: np.ndarray | None = None) -> tuple[pa.RecordBatch, list[Issue]]:
        """Decode a batch.

        Args:
            records: ``uint8`` array of shape ``(rows, layout.length)``.
            avail: Bytes actually present in each record (variable-length records); fields past it are null.

        Returns:
            The batch and the fields whose bytes did not decode (empty when all is well).
        """
        rows, length = records.shape
        buffer = np.zeros(rows * length + 2 * _PAD, np.uint8)
        buffer[_PAD: _PAD + rows * length] = records.reshape(-1)
        frame = _Frame(buffer, _PAD, (rows,), (length,), avail)
        issues: list[Issue] = []
        columns = [self._column(c, frame, (), issues) for c in self.layout.record.selected]
        return pa.RecordBatch.from_arrays(columns, schema=self.layout.schema), issues

    # --- structure ------------------------------------------------------------------------------------

    def _column(self, item: Item, parent: _Frame, occurs: tuple[tuple[int, int], ...],
                issues: list[Issue]) -> pa.Array:
        frame = parent.at(item.offset)
        if not item.occurs:
            return self._item(item, frame, occurs, issues)
        values = self._item(item, frame.repeat(item.occurs, item.size), (*occurs, (item.occurs, item.size)), issues)
        offsets = pa.array(np.arange(0, parent.count * item.occurs + 1, item.occurs, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, values, type=pa.list_(values.type))

    def _item(self, item: Item, frame: _Frame, occurs: tuple[tuple[int, int], ...],
              issues: list[Issue]) -> pa.Array:
        if item.kind == "group":
            children = [self._column(c, frame, occurs, issues) for c in item.selected]
            fields = [pa.field(c.column, a.type) for c, a in zip(item.selected, children, strict=True)]
            return pa.StructArray.from_arrays(children, fields=fields)
        valid = None if frame.avail is None else (frame.avail >= item.size).reshape(-1)
        if item.kind == "text":
            return self._text(frame.bytes(item.size), valid)
        if item.kind == "binary":
            return _binary(item, frame, valid)
        if item.kind == "packed":
            parts, neg, bad = _packed(item, frame)
            what = "packed decimal (COMP-3)"
        else:
            parts, neg, bad, blank = _zoned(item, frame)
            what = "zoned decimal"
            if blank.any():
                valid = ~blank if valid is None else valid & ~blank
        if valid is not None:
            bad &= valid
        if bad.any():
            matrix = frame.bytes(item.size)
            issues.append(Issue(item, bad, lambda e: matrix[e].tobytes(), occurs, what))
        return _number(item, parts, neg, valid)

    # --- text -----------------------------------------------------------------------------------------

    def _text(self, matrix: np.ndarray, valid: np.ndarray | None) -> pa.Array:
        rows, width = matrix.shape
        codes = np.ascontiguousarray(matrix)
        data = np.frombuffer(codes.tobytes().translate(self._one), np.uint8)
        if (data == _NO_SINGLE_BYTE).any():  # a character outside ASCII: up to three UTF-8 bytes per code
            widths = self._width[codes]
            data = self._three[codes][np.arange(3) < widths[..., None]]
            offsets = np.zeros(rows + 1, np.int32)
            np.cumsum(widths.sum(axis=1, dtype=np.int64), out=offsets[1:])
        else:
            offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
        array = pa.Array.from_buffers(pa.string(), rows,
                                      [_validity(valid), pa.py_buffer(offsets), pa.py_buffer(data)])
        return pc.utf8_rtrim(array, characters=" ") if self.trim else array


# --- numbers ----------------------------------------------------------------------------------------------


def _binary(item: Item, frame: _Frame, valid: np.ndarray | None) -> pa.Array:
    """Big-endian two's complement (signed) or unsigned integers of 2, 4 or 8 bytes."""
    big = np.dtype(f">{'i' if item.signed else 'u'}{item.size}")
    values = frame.view(big).astype(big.newbyteorder("="))
    arrow_type = item.arrow_type()
    if pa.types.is_integer(arrow_type):
        return pa.array(values.astype(arrow_type.to_pandas_dtype()), type=arrow_type,
                        mask=None if valid is None else ~valid)
    wide = np.zeros((len(values), 2), np.int64)
    if values.dtype == np.uint64:
        wide[:, 0] = values.view(np.int64)  # high word 0: an unsigned value is never negative
    else:
        wide[:, 0] = values
        wide[:, 1] = wide[:, 0] >> 63
    return pa.Array.from_buffers(arrow_type, len(values), [_validity(valid), pa.py_buffer(wide)])


def _combine(pairs: np.ndarray) -> np.ndarray:
    """Byte lanes holding 0..99 each (most significant first) → the number they spell (up to 16 digits)."""
    x = ((pairs >> 8) & 0x00FF00FF00FF00FF) * 100 + (pairs & 0x00FF00FF00FF00FF)
    x = ((x >> 16) & 0x0000FFFF0000FFFF) * 10_000 + (x & 0x0000FFFF0000FFFF)
    return (x >> 32) * 100_000_000 + (x & 0xFFFFFFFF)


def _zoned(item: Item, frame: _Frame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Zoned decimals (one digit a byte, zone F; sign overpunched on the last or first digit, or separate).

    Returns:
        ``(parts, neg, bad, blank)``: the magnitude in base-10⁸ parts (least significant first), negative
        flags, invalid flags, and flags of fields that are all spaces.
    """
    count = frame.count
    size, start, digits, position = item.size, 0, item.digits, -1
    if item.sign_separate:
        sign = frame.view(np.uint8, 0 if item.sign_leading else size - 1)
        start = 1 if item.sign_leading else 0
        neg = sign == _EBCDIC_MINUS
        bad = (sign != _EBCDIC_PLUS) & ~neg
    else:
        position = 0 if item.sign_leading else size - 1
        zone = frame.view(np.uint8, position) >> 4
        if item.signed:  # C, A, E, F: positive; D, B: negative
            neg = (zone == 0xD) | (zone == 0xB)
            bad = zone < 0xA
        else:
            neg = np.zeros(count, bool)
            bad = (zone != 0xF) & (zone != 0xC)
    blank = np.ones(count, bool)
    parts: list[np.ndarray] = []
    for end in range(start + digits, start, -8):  # 8-byte chunks from the right
        width = min(8, end - start)
        word = frame.word(end, width)
        mask = (1 << (8 * width)) - 1
        blank &= word == (0x4040404040404040 & mask)
        zones = word & (_HIGH & mask)
        if not item.sign_separate and (end - 1 - position) in range(width):  # the overpunched byte
            zones |= np.uint64(0xF0 << (8 * (end - 1 - position)))
        nibbles = word & _LANES
        bad |= (zones != (_HIGH & mask)) | (((nibbles + _SIX) & _HIGH) != 0)
        # 16-bit lanes: high byte × 10 + low byte, so every byte pair spells 0..99; then the usual combine.
        pairs = ((nibbles >> 8) & 0x00FF00FF00FF00FF) * 10 + (nibbles & 0x00FF00FF00FF00FF)
        parts.append(_combine_pairs_of_digits(pairs))
    if item.sign_separate:
        blank &= frame.view(np.uint8, 0 if item.sign_leading else size - 1) == _EBCDIC_SPACE
    return parts, neg, bad & ~blank, blank


def _combine_pairs_of_digits(x: np.ndarray) -> np.ndarray:
    """16-bit lanes holding 0..99 (most significant first) → the number (up to 8 digits)."""
    x = ((x >> 16) & 0x0000FFFF0000FFFF) * 100 + (x & 0x0000FFFF0000FFFF)
    return (x >> 32) * 10_000 + (x & 0xFFFFFFFF)


def _packed(item: Item, frame: _Frame) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Packed decimals (two digits a byte, the sign in the last nibble).

    Returns:
        ``(parts, neg, bad)``: the magnitude in base-10⁸ parts (least significant first), negative flags and
        invalid flags.
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
    # Re-base to 10^8 parts, like zoned: chunk 0 holds 15 digits, chunk 1 the next 16.
    first = parts16[0]
    parts = [first % 100_000_000, first // 100_000_000]
    if len(parts16) > 1:
        second = parts16[1]  # value × 10^15: split so that parts stay below 10^8
        parts[1] = parts[1] + (second % 10) * 10_000_000
        rest = second // 10
        parts += [rest % 100_000_000, rest // 100_000_000]
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
    """An Arrow integer or decimal array from base-10⁸ magnitude parts and signs."""
    rows = len(neg)
    arrow_type = item.arrow_type()
    parts = [p.astype(np.int64) for p in parts] + [np.zeros(rows, np.int64)] * 4
    if item.digits <= 18:
        values = parts[0] + parts[1] * 10**8 + parts[2] * 10**16
        np.negative(values, out=values, where=neg)
        if pa.types.is_integer(arrow_type):
            return pa.array(values.astype(arrow_type.to_pandas_dtype()), type=arrow_type,
                            mask=None if valid is None else ~valid)
        wide = np.empty((rows, 2), np.int64)  # decimal128: little-endian two's complement, 16 bytes
        wide[:, 0] = values
        wide[:, 1] = values >> 63
        return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), pa.py_buffer(wide)])
    # More than 18 digits: high part × 10^18 + low part, in Arrow's 128-bit decimal arithmetic.
    low = parts[0] + parts[1] * 10**8 + (parts[2] % 100) * 10**16
    high = parts[2] // 100 + parts[3] * 10**6
    total = pc.add(pc.multiply(_decimal(high, pa.decimal128(13, 0)), _TEN_18), _decimal(low, pa.decimal128(18, 0)))
    total = pc.if_else(pa.array(neg), pc.negate(total), total)
    return pa.Array.from_buffers(arrow_type, rows, [_validity(valid), total.buffers()[1]], offset=total.offset)


def _decimal(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    wide = np.zeros((len(values), 2), np.int64)
    wide[:, 0] = values
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(wide)])


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    return None if valid is None or valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
