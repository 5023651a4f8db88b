"""Record formats: cutting a file's bytes into records (F, FB, V, VB, VS, VBS, D, and lengths read from the record).

A :class:`Framing` streams one byte range of a file (plain or gzip) and yields :class:`Chunk` s of up to
``batch_rows`` records as one ``uint8`` matrix (rows × layout length) plus the bytes present in each record.
Fixed records are a reshape of the bytes read. Length-prefixed records (RDW, BDW) are walked header by header,
but runs of records of one length are checked with one vectorised comparison, so a file of equal records costs
about as much as a fixed one; text lines are found with one vectorised search for LF.

Where splits may start (``boundaries``): F at any record, D at a line start found after the cut, VB and FB at
a block, V at a record found by walking the RDW chain from the start once, VS at a segment that starts a record
and VBS at a block whose first segment starts one (a split reads past its end to finish its last record). A length that cannot be (shorter
than its header, a header whose reserved bytes are not zero, a block that does not end on a record) stops the
read with the file, the byte offset and the header's bytes.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from dativo.errors import PluginFailed

_MiB = 1 << 20
_FIRST_GUESS = 64
"""Records after an RDW first checked for the same RDW at once; the guess grows 4x while they match."""
_WALK_AFTER_MISS = 256
"""Records walked one by one after a guess missed, so files of mixed lengths do not pay for guessing."""
PAD = 8
"""Zero bytes before and after a batch buffer, so that the decoder may read any field as the low bytes of
an 8-byte word (see :func:`dativo_cobol.decoder.padded_buffer`)."""
_FORMAT_HINT = ("Check record_format and the RDW/BDW options (is_rdw_big_endian, is_rdw_part_of_record_length, "
                "rdw_adjustment), and that the file was transferred in binary.")


@dataclass
class Chunk:
    """Records cut from a file.

    Attributes:
        records: ``uint8`` matrix, one row per record, as wide as the layout (bytes past a record's end are
            whatever follows; ``avail`` says where it ends).
        avail: Bytes of each record present (``None``: all, fixed records).
        first: Number of the first record in its file (0-based).
        offsets: File offset of each record (of its RDW, where it has one).
        raw: The raw bytes of records (by row), as a reject file holds them.
    """

    records: np.ndarray
    avail: np.ndarray | None
    first: int
    offsets: np.ndarray
    raw: Callable[[np.ndarray], list[bytes]]


@dataclass(frozen=True)
class Headers:
    """How record and block descriptor words are read."""

    rdw_big_endian: bool = True
    rdw_includes_header: bool = True
    rdw_adjustment: int = 0
    bdw_big_endian: bool = True
    bdw_adjustment: int = 0

    def rdw(self, head: bytes) -> int | None:
        """The payload length an RDW gives, or ``None`` when the bytes cannot be an RDW."""
        word = head if self.rdw_big_endian else head[::-1]
        if word[2] or word[3]:
            return None  # reserved (a spanned file's segment bits: record_format VS or VBS)
        return self._length(word)

    def _length(self, word: bytes) -> int | None:
        size = (word[0] << 8 | word[1]) - (4 if self.rdw_includes_header else 0) + self.rdw_adjustment
        return size if size >= 0 and (size > 0 or not self.rdw_includes_header) else None

    def rdw_rule(self) -> tuple[int, int, int, int, int, int]:
        """:meth:`rdw` as numbers for :func:`rdw_records`: where in the 4 bytes the length's high and low byte
        and the two reserved bytes are, what to subtract from the length, and the least payload."""
        order = (0, 1, 2, 3) if self.rdw_big_endian else (3, 2, 1, 0)
        return (*order, (4 if self.rdw_includes_header else 0) - self.rdw_adjustment,
                1 if self.rdw_includes_header else 0)

    def sdw(self, head: bytes) -> tuple[int, int] | None:
        """A spanned file's segment descriptor word: the segment's payload length and its control code
        (:data:`WHOLE`, :data:`FIRST`, :data:`LAST`, :data:`MIDDLE`); ``None`` when it cannot be one."""
        word = head if self.rdw_big_endian else head[::-1]
        if word[2] & 0xFC or word[3]:
            return None
        size = self._length(word)
        return None if size is None else (size, word[2])

    def bdw(self, head: bytes) -> int | None:
        """The bytes a BDW says its block holds after it, or ``None`` when the bytes cannot be a BDW."""
        word = head if self.bdw_big_endian else head[::-1]
        if word[0] & 0x80:  # extended BDW: a 31-bit length
            length = int.from_bytes(word, "big") & 0x7FFFFFFF
        elif word[2] or word[3]:
            return None
        else:
            length = word[0] << 8 | word[1]
        size = length - 4 + self.bdw_adjustment
        return size if size >= 0 else None


WHOLE, FIRST, LAST, MIDDLE = 0, 1, 2, 3
"""Segment control codes of a spanned record's segment descriptor word (its third byte)."""
_STARTS_RECORD = (WHOLE, FIRST)
_MAX_SEGMENT = 32756
"""Payload bytes of one segment at most (the 2-byte length counts the 4-byte descriptor)."""


def segmented(payload: bytes) -> bytes:
    """``payload`` as the segments of a spanned record (how a reject file holds a VS or VBS record)."""
    if len(payload) <= _MAX_SEGMENT:
        return (len(payload) + 4).to_bytes(2, "big") + bytes([WHOLE, 0]) + payload
    parts = [payload[i: i + _MAX_SEGMENT] for i in range(0, len(payload), _MAX_SEGMENT)]
    codes = [FIRST, *[MIDDLE] * (len(parts) - 2), LAST]
    return b"".join((len(p) + 4).to_bytes(2, "big") + bytes([c, 0]) + p for p, c in zip(parts, codes))


def open_stream(path: str) -> tuple[BinaryIO, bool]:
    """The file, decompressed if it is gzip (by its magic bytes), and whether it was."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    return (gzip.open(path, "rb") if compressed else open(path, "rb")), compressed  # type: ignore[return-value]


def is_gzip(path: str) -> bool:
    """Whether the file is gzip-compressed."""
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


class Framing:
    """Cuts files of one record format into chunks of records.

    Args:
        fmt: ``F``, ``FB``, ``V``, ``VB``, ``VS``, ``VBS`` or ``D``.
        length: Width of a chunk's rows (the layout's length).
        record_length: Bytes of a fixed record (F, FB).
        headers: How RDWs and BDWs are read.
        batch_rows: Records per chunk.
        length_of: For F with a length inside the record: the record's length from its bytes at a position.
        least: Bytes ``length_of`` needs to see.
    """

    def __init__(self, fmt: str, length: int, record_length: int, headers: Headers, batch_rows: int,
                 length_of: Callable[[bytes, int], int] | None = None, least: int = 0) -> None:
        self.fmt, self.length, self.record_length, self.headers = fmt, length, record_length, headers
        self.batch_rows, self.length_of, self.least = batch_rows, length_of, least

    # --- splits ---------------------------------------------------------------------------------------

    def boundaries(self, path: str, start: int, end: int, step: int) -> list[tuple[int, int]]:
        """``(offset, first record number)`` of each split of ``[start, end)`` about ``step`` bytes apart.

        Record numbers are known for F, FB and V (``-1`` where counting would need a read, i.e. D and VB:
        messages then give byte offsets only).
        """
        if self.fmt == "F" and self.length_of is None:
            size = self.record_length
            step = max(1, step // size) * size
            return [(s, (s - start) // size) for s in range(start, end, step)] or [(start, 0)]
        if self.length_of is not None:
            return [(start, 0)]  # each record's length is inside it: only a walk from the start finds them
        cuts = [(start, 0)]
        with open(path, "rb") as file:
            if self.fmt == "D":
                for cut in range(start + step, end, step):
                    file.seek(cut - 1)
                    data = file.read(64 * 1024)
                    while data and b"\n" not in data:
                        more = file.read(64 * 1024)
                        if not more:
                            break
                        data += more
                    found = data.find(b"\n")
                    offset = cut - 1 + found + 1 if found >= 0 else end
                    if cuts[-1][0] < offset < end:
                        cuts.append((offset, -1))
                return cuts
            if self.fmt in ("VS", "VBS"):
                return self._spanned_boundaries(path, file, start, end, step)
            # V, VB, FB: walk the descriptor words up to the last cut (VB and FB block by block: few headers
            # to read); the reads check the rest.
            position, record, next_cut = start, 0, start + step
            buffer, base, fresh = b"", start, False
            while position < end and next_cut < end:
                if self.fmt == "V" and position + 4 <= base + len(buffer):
                    begin = position
                    walked, at, broken = rdw_records(buffer, position - base, len(buffer), 1 << 62,
                                                     next_cut - base, self.headers)
                    record, position = record + len(walked), base + at
                    if broken:
                        raise self._bad_header(path, position, buffer[at: at + 4], record)
                    if position >= next_cut:
                        if position < end:
                            cuts.append((position, record))
                        next_cut, fresh = position + step, False
                        continue
                    if position > begin or not fresh:  # the next record is not whole in the buffer
                        buffer, base, fresh = b"", position, False
                        continue
                    break  # not even after reading on from it: the file ends inside it (the read says so)
                if position + 4 > base + len(buffer):
                    file.seek(position)
                    buffer, base, fresh = file.read(8 * _MiB), position, True
                    if len(buffer) < 4:
                        break
                    continue
                head = buffer[position - base: position - base + 4]
                size = self.headers.bdw(head)
                if size is None:
                    raise self._bad_header(path, position, head, -1, "block descriptor word")
                if position >= next_cut:
                    cuts.append((position, record if self.fmt == "FB" else -1))
                    next_cut = position + step
                position += 4 + size
                if self.fmt == "FB":
                    record += size // self.record_length
            return cuts

    def _spanned_boundaries(self, path: str, file: BinaryIO, start: int, end: int, step: int
                            ) -> list[tuple[int, int]]:
        """VS: cut at a segment that starts a record; VBS: at a block whose first segment does."""
        cuts = [(start, -1)]
        position, next_cut = start, start + step
        blocked = self.fmt == "VBS"
        while position < end and next_cut < end:  # up to the last cut: the reads check the rest
            file.seek(position)
            head = file.read(8)
            if len(head) < 4:
                break
            if blocked:
                size = self.headers.bdw(head[:4])
                if size is None:
                    raise self._bad_header(path, position, head[:4], -1, "block descriptor word")
                segment = self.headers.sdw(head[4:8]) if len(head) == 8 and size >= 4 else None
            else:
                segment = self.headers.sdw(head[:4])
                if segment is None:
                    raise self._bad_header(path, position, head[:4], -1, "segment descriptor word")
                size = segment[0]
            if position >= next_cut and segment is not None and segment[1] in _STARTS_RECORD:
                cuts.append((position, -1))
                next_cut = position + step
            position += 4 + size
        return cuts

    # --- reading --------------------------------------------------------------------------------------

    def chunks(self, path: str, start: int, end: int, first: int, data_end: int) -> Iterator[Chunk]:
        """The records of ``[start, end)`` (``end`` is where the next split starts; ``data_end`` where the file's
        records end, before any footer)."""
        stream, compressed = open_stream(path)
        with stream:
            if compressed:
                yield from self._compressed(path, stream, start, data_end, first)
                return
            stream.seek(start)
            yield from self._chunks(path, stream, start, end, first)

    def _compressed(self, path: str, stream: BinaryIO, start: int, footer: int, first: int) -> Iterator[Chunk]:
        """A gzip file: its size is only known at its end, so the footer is held back while streaming."""
        skipped = 0
        while skipped < start:  # the header (file_start_offset) of the decompressed bytes
            data = stream.read(min(_MiB, start - skipped))
            if not data:
                break
            skipped += len(data)
        yield from self._chunks(path, _HoldBack(stream, footer), start, None, first)

    def _chunks(self, path: str, stream: BinaryIO | _HoldBack, start: int, end: int | None,
                first: int) -> Iterator[Chunk]:
        if self.fmt == "F" and self.length_of is None:
            yield from self._fixed(path, stream, start, end, first)
            return
        if self.fmt in ("VS", "VBS"):
            yield from self._spanned(path, stream, start, end, first)
            return
        window = _Window(self.length + PAD)
        base, record, position, eof = start, first, 0, False
        read_size = max(_MiB, min(64 * _MiB, self.batch_rows * (self.length + 8)))
        starts: list[int] = []
        sizes: list[int] = []
        heads: list[int] = []
        while True:
            limit = end - base if end is not None else None
            exhausted = eof or (limit is not None and window.filled >= limit)
            walked = self._walk(path, window.view(), position, base, record + len(starts), limit,
                                self.batch_rows - len(starts))
            starts += walked[0]
            sizes += walked[1]
            heads += walked[2]
            position = walked[3]
            if len(starts) and (len(starts) >= self.batch_rows or exhausted):
                yield self._chunk(window.data, starts, sizes, heads, record, base, position)
                record += len(starts)
                window.drop(position)
                base += position
                position = 0
                starts, sizes, heads = [], [], []
                continue
            # not a whole batch yet: read on, and walk on from where this walk stopped
            if exhausted:
                left = (window.filled if limit is None else min(window.filled, limit)) - position
                if left > 0 and self.fmt == "D":  # a last line without a line end
                    size = left - (1 if window.data[position + left - 1] == 0x0D else 0)
                    yield self._chunk(window.data, [position], [size], [position], record, base, position + left)
                elif left > 0:
                    raise PluginFailed(f"{path}: the last record (at byte {base + position}) is cut short: the "
                                       f"data ends {left} bytes into it", hint="Check that the file was "
                                       "transferred completely and in binary, and file_end_offset.")
                return
            want = read_size if limit is None else min(read_size, limit - window.filled)
            eof = not window.read(stream, want)

    def _spanned(self, path: str, stream: BinaryIO | _HoldBack, start: int, end: int | None,
                 first: int) -> Iterator[Chunk]:
        """VS and VBS: join each record's segments; the split owns the records whose first segment is before
        ``end`` and reads on past it until its last record is complete."""
        blocked = self.fmt == "VBS"
        reader = _Bytes(stream, start, max(_MiB, min(64 * _MiB, self.batch_rows * (self.length + 8))))
        out = bytearray()
        starts: list[int] = []
        heads: list[int] = []
        record = first
        pending: int | None = None  # file offset of the first segment of the record being joined
        pending_at = 0  # where in ``out`` that record begins

        def segments() -> Iterator[tuple[int, int, int, int]]:
            """``(offset, payload start, payload size, code)`` of each segment from ``start`` on."""
            while True:
                offset = reader.offset
                if end is not None and offset >= end and pending is None:
                    return
                if blocked:
                    head = reader.take(4)
                    if not head:
                        return
                    size = self.headers.bdw(head) if len(head) == 4 else None
                    if size is None:
                        raise self._bad_header(path, offset, head, -1, "block descriptor word")
                    block_end = offset + 4 + size
                    while reader.offset < block_end:
                        at = reader.offset
                        word = reader.take(4)
                        segment = self.headers.sdw(word) if len(word) == 4 and at + 4 <= block_end else None
                        if segment is None or at + 4 + segment[0] > block_end:
                            raise PluginFailed(
                                f"{path}: the segment at byte {at} (in the block at byte {offset}) has the "
                                f"descriptor X'{word.hex().upper()}', which does not fit its block "
                                f"({block_end - at} bytes left)", hint=_FORMAT_HINT)
                        yield at, reader.mark(segment[0], path), segment[0], segment[1]
                else:
                    head = reader.take(4)
                    if not head:
                        return
                    segment = self.headers.sdw(head) if len(head) == 4 else None
                    if segment is None:
                        raise self._bad_header(path, offset, head, -1, "segment descriptor word")
                    yield offset, reader.mark(segment[0], path), segment[0], segment[1]

        for offset, at, size, code in segments():
            if (code in _STARTS_RECORD) == (pending is not None):
                what = "starts a new record" if pending is not None else "continues a record that never started"
                since = f" (the record at byte {pending} has no last segment)" if pending is not None else ""
                raise PluginFailed(f"{path}: the segment at byte {offset} (control code {code}) {what}{since}",
                                   hint=_FORMAT_HINT)
            if code in _STARTS_RECORD:
                pending, pending_at = offset, len(out)
            out += reader.view(at, size)
            if code in (WHOLE, LAST):
                assert pending is not None
                starts.append(pending_at)
                heads.append(pending)
                pending = None
                if len(starts) >= self.batch_rows:
                    yield self._joined(out, starts, heads, record)
                    record += len(starts)
                    out, starts, heads = bytearray(), [], []
            reader.release()
        if pending is not None:
            raise PluginFailed(f"{path}: the last record (at byte {pending}) is cut short: its segments end "
                               "without a last one", hint="Check that the file was transferred completely and "
                               "in binary, and file_end_offset.")
        if starts:
            yield self._joined(out, starts, heads, record)

    def _joined(self, out: bytearray, starts: list[int], heads: list[int], first: int) -> Chunk:
        used = len(out)
        data = np.zeros(used + self.length, np.uint8)
        data[:used] = np.frombuffer(out, np.uint8)
        starts_ = np.asarray(starts, np.int64)
        sizes_ = np.diff(np.append(starts_, used))
        records = _evenly_spaced(data, starts_, sizes_, self.length)
        if records is None:
            records = np.lib.stride_tricks.sliding_window_view(data, self.length)[starts_]

        def raw(rows: np.ndarray) -> list[bytes]:
            return [segmented(data[starts_[r]: starts_[r] + sizes_[r]].tobytes()) for r in rows]

        return Chunk(records, sizes_, first, np.asarray(heads, np.int64), raw)

    def _fixed(self, path: str, stream: BinaryIO | _HoldBack, start: int, end: int | None,
               first: int) -> Iterator[Chunk]:
        size, width = self.record_length, self.length
        position, record = start, first
        while end is None or position < end:
            want = self.batch_rows * size if end is None else min(self.batch_rows * size, end - position)
            if size == width:  # read straight into a padded batch buffer, which the decoder uses as it is
                padded, got = _read_padded(stream, want)
                data = padded[PAD: PAD + got]
            else:
                data = np.frombuffer(_read_full(stream, want), np.uint8)
            if not data.size:
                return
            if data.size % size:
                raise PluginFailed(f"{path}: {data.size % size} bytes are left at byte {position + data.size - data.size % size}"
                                   f", which is not a whole {size}-byte record", hint="Check that the copybook "
                                   "(or record_length) matches the file, file_start_offset/file_end_offset, and that "
                                   "it was transferred completely; if records start with a 4-byte RDW, set "
                                   "record_format: V.")
            records = data.reshape(-1, size)
            rows = records.shape[0]
            avail = None
            if size != width:  # a record_length other than the copybook's
                wide = np.zeros((rows, width), np.uint8)
                wide[:, : min(size, width)] = records[:, : min(size, width)]
                avail = np.full(rows, size, np.int64) if size < width else None
                records = wide
            offsets = position + np.arange(rows, dtype=np.int64) * size
            yield Chunk(records, avail, record, offsets,
                        lambda rows_, data=data: [data[r * size:(r + 1) * size].tobytes() for r in rows_])
            position += data.size
            record += rows

    def _walk(self, path: str, buffer: np.ndarray, position: int, base: int, record: int, limit: int | None,
              most: int) -> tuple[list[int], list[int], list[int], int]:
        """Up to about ``most`` records wholly in ``buffer`` from ``position`` (whole blocks of VB and FB): payload
        starts, sizes, header starts, end position."""
        starts: list[int] = []
        sizes: list[int] = []
        heads: list[int] = []
        stop = len(buffer) if limit is None else min(len(buffer), limit)
        if self.fmt == "D":
            data = np.frombuffer(buffer, np.uint8, count=stop)
            ends = np.flatnonzero(data[position:] == 0x0A)[:most] + position
            if len(ends):
                begin = np.concatenate([[position], ends[:-1] + 1])
                size = ends - begin
                size -= (size > 0) & (data[np.maximum(ends - 1, 0)] == 0x0D)  # CRLF
                starts, sizes, heads = begin.tolist(), size.tolist(), begin.tolist()
                position = int(ends[-1]) + 1
            del data
            return starts, sizes, heads, position
        if self.fmt == "V":
            starts, position, broken = rdw_records(buffer, position, stop, most, stop, self.headers)
            if broken:
                raise self._bad_header(path, base + position, bytes(buffer[position: position + 4]),
                                       record + len(starts))
            return starts, *_sizes_and_heads(starts, position), position
        headers = self.headers
        while len(starts) < most:
            if self.fmt in ("VB", "FB"):
                if position + 4 > stop:
                    break
                head = bytes(buffer[position: position + 4])
                block = headers.bdw(head)
                if block is None:
                    raise self._bad_header(path, base + position, head, -1, "block descriptor word")
                if position + 4 + block > stop:
                    break
                inner, at = position + 4, position + 4
                end = inner + block
                if self.fmt == "FB":
                    if block % self.record_length:
                        raise PluginFailed(f"{path}: the block at byte {base + position} holds {block} bytes, "
                                           f"which is not a whole number of {self.record_length}-byte records",
                                           hint=_FORMAT_HINT)
                    for at in range(inner, end, self.record_length):
                        starts.append(at)
                        sizes.append(self.record_length)
                        heads.append(at)
                else:
                    walked, at, _ = rdw_records(buffer, inner, end, end, end, headers)
                    if at < end:  # an RDW that is not one, or a record that runs past the block
                        rdw = bytes(buffer[at: at + 4])
                        raise PluginFailed(
                            f"{path}: the record at byte {base + at} (in the block at byte {base + position}) "
                            f"has the RDW X'{rdw.hex().upper()}', which does not fit its block "
                            f"({end - at} bytes left)", hint=_FORMAT_HINT)
                    starts += walked
                    more_sizes, more_heads = _sizes_and_heads(walked, end)
                    sizes += more_sizes
                    heads += more_heads
                position = end
                continue
            if self.length_of is not None:  # F with the length inside the record
                if position + self.least > stop:
                    break
                size = self.length_of(bytes(buffer[position: position + self.least]), base + position)
                if position + size > stop:
                    break
                starts.append(position)
                sizes.append(size)
                heads.append(position)
                position += size
                continue
        return starts, sizes, heads, position

    def _chunk(self, data: np.ndarray, starts: list[int], sizes: list[int], heads: list[int], first: int,
               base: int, end: int) -> Chunk:
        """The records cut from ``data`` (a :class:`_Window`'s buffer, which the chunk keeps: the window moves
        on to a new one), whose bytes past ``end`` are the next records' or unset: the decoder masks them."""
        width = self.length
        assert len(data) >= end + width
        starts_ = np.asarray(starts, np.int64)
        sizes_ = np.asarray(sizes, np.int64)
        heads_ = np.asarray(heads, np.int64)
        records = _evenly_spaced(data, starts_, sizes_, width)
        if records is None:
            records = np.lib.stride_tricks.sliding_window_view(data, width)[starts_]
        fmt = self.fmt

        def raw(rows: np.ndarray) -> list[bytes]:
            if fmt == "D":
                return [data[starts_[r]: starts_[r] + sizes_[r]].tobytes() + b"\n" for r in rows]
            begin = heads_ if fmt in ("V", "VB") else starts_
            return [data[begin[r]: starts_[r] + sizes_[r]].tobytes() for r in rows]

        return Chunk(records, sizes_, first, base + heads_, raw)

    def _bad_header(self, path: str, offset: int, head: bytes, record: int,
                    what: str = "record descriptor word") -> PluginFailed:
        where = f"record {record + 1} at byte {offset}" if record >= 0 else f"byte {offset}"
        rule = ("2-byte length, then X'0000'" if self.headers.rdw_big_endian else "X'0000', then a 2-byte "
                "little-endian length")
        return PluginFailed(f"{path}: {where} starts with X'{head.hex().upper()}', which is not a valid {what} "
                            f"({rule}; with the adjustments set, a length that leaves no negative payload)",
                            hint=_FORMAT_HINT)


class _Window:
    """The bytes of a file being cut into records, read straight into a numpy buffer (no copy per read).

    A chunk keeps the buffer its records were cut from; :meth:`drop` moves the bytes after it to a new one. The
    buffer always has ``slack`` bytes allocated past the data, so a record's view of the layout's width may
    run past the last record.
    """

    def __init__(self, slack: int) -> None:
        self.slack = slack
        self.data = np.empty(slack, np.uint8)
        self.filled = 0

    def view(self) -> np.ndarray:
        """The bytes read and not dropped."""
        return self.data[: self.filled]

    def read(self, stream: BinaryIO | _HoldBack, size: int) -> int:
        """Append up to ``size`` bytes of ``stream``; how many came (0 at its end)."""
        if self.filled + size + self.slack > len(self.data):
            grown = np.empty(max(self.filled + size + self.slack, 2 * len(self.data)), np.uint8)
            grown[: self.filled] = self.data[: self.filled]
            self.data = grown
        readinto = getattr(stream, "readinto", None)
        if readinto is None:
            data = stream.read(size)
            self.data[self.filled: self.filled + len(data)] = np.frombuffer(data, np.uint8)
            got = len(data)
        else:
            got = readinto(memoryview(self.data)[self.filled: self.filled + size]) or 0
        self.filled += got
        return got

    def drop(self, count: int) -> None:
        """Forget the first ``count`` bytes (a chunk holds them): the rest moves to a buffer of its own."""
        rest = self.filled - count
        fresh = np.empty(max(len(self.data), rest + self.slack), np.uint8)
        fresh[:rest] = self.data[count: self.filled]
        self.data, self.filled = fresh, rest


class _Bytes:
    """A file's bytes from an offset on, read a large block at a time, consumed front to back."""

    def __init__(self, stream: BinaryIO | _HoldBack, offset: int, read_size: int) -> None:
        self.stream, self.read_size = stream, read_size
        self.buffer = bytearray()
        self.base = offset  # file offset of buffer[0]
        self.position = 0  # next unread byte in buffer

    @property
    def offset(self) -> int:
        """File offset of the next unread byte."""
        return self.base + self.position

    def _have(self, count: int) -> bool:
        while len(self.buffer) - self.position < count:
            data = self.stream.read(max(self.read_size, count))
            if not data:
                return False
            self.buffer += data
        return True

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes (fewer at the end of the data)."""
        self._have(count)
        data = bytes(self.buffer[self.position: self.position + count])
        self.position += len(data)
        return data

    def mark(self, count: int, path: str) -> int:
        """Skip the next ``count`` bytes and return where in the buffer they start (see :meth:`view`)."""
        if not self._have(count):
            raise PluginFailed(f"{path}: the segment ending at byte {self.offset + count} is cut short: the data "
                               f"ends {len(self.buffer) - self.position} bytes into it",
                               hint="Check that the file was transferred completely and in binary.")
        at = self.position
        self.position += count
        return at

    def view(self, at: int, count: int) -> memoryview:
        return memoryview(self.buffer)[at: at + count]

    def release(self) -> None:
        """Drop the bytes consumed, once they are a large share of the buffer."""
        if self.position >= self.read_size:
            del self.buffer[: self.position]
            self.base += self.position
            self.position = 0


class _HoldBack:
    """A stream that hides its last ``footer`` bytes (a gzip stream's size is unknown until its end)."""

    def __init__(self, stream: BinaryIO, footer: int) -> None:
        self.stream, self.footer, self.held = stream, footer, b""

    def read(self, size: int) -> bytes:
        while len(self.held) < size + self.footer:
            more = self.stream.read(size + self.footer - len(self.held))
            if not more:
                break
            self.held += more
        count = max(0, min(size, len(self.held) - self.footer))
        out, self.held = self.held[:count], self.held[count:]
        return out


def _read_padded(stream: BinaryIO | _HoldBack, size: int) -> tuple[np.ndarray, int]:
    """Up to ``size`` bytes of ``stream`` in a new buffer between ``PAD`` zero bytes; and how many were read."""
    buffer = np.empty(size + 2 * PAD, np.uint8)
    buffer[:PAD] = 0
    readinto = getattr(stream, "readinto", None)
    got = 0
    if readinto is None:  # a stream that hides a footer: read, then copy
        data = _read_full(stream, size)
        got = len(data)
        buffer[PAD: PAD + got] = np.frombuffer(data, np.uint8)
    else:
        view = memoryview(buffer)[PAD: PAD + size]
        while got < size:
            count = readinto(view[got:])
            if not count:
                break
            got += count
    buffer[PAD + got: PAD + got + PAD] = 0
    return buffer, got


def _read_full(stream: BinaryIO | _HoldBack, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _evenly_spaced(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, width: int) -> np.ndarray | None:
    """The records as a strided view of ``data`` (no copy) when they follow each other at one step and none
    is shorter than the layout (the usual variable-length file of one record length); else ``None``."""
    rows = len(starts)
    if rows < 2 or int(sizes.min()) < width:
        return None
    step = int(starts[1] - starts[0])
    if step < width or not (np.diff(starts) == step).all():
        return None
    return np.lib.stride_tricks.as_strided(data[int(starts[0]):], (rows, width), (step, 1), writeable=False)


def rdw_records(buffer: bytes | np.ndarray, position: int, stop: int, most: int, until: int,
                headers: Headers) -> tuple[list[int], int, bool]:
    """The V records at ``position``: the payload offsets of up to ``most`` records wholly before ``stop``,
    walking on while records start before ``until``; the offset reached; and whether an RDW there that
    :meth:`Headers.rdw` refuses stopped the walk.

    The chain is walked record by record, except that after a record the next ``guess`` records are compared
    with its RDW at once (a run of records of one length is passed in a single numpy comparison); the guess
    grows while it holds and, once missed, waits :data:`_WALK_AFTER_MISS` records.
    """
    view, rule = memoryview(buffer), headers.rdw_rule()
    starts: list[int] = []
    guess, walk = _FIRST_GUESS, 1
    while len(starts) < most and position < until:
        want = min(walk, most - len(starts))
        walked, position, broken = _rdw_chain(view, position, stop, want, until, rule)
        starts += walked
        if broken or len(walked) < want or position >= until:
            return starts, position, broken
        size = 4 + position - walked[-1]  # the last record, RDW included
        fits = min(guess, most - len(starts), (stop - position) // size, -(-(until - position) // size))
        run = _same_header_run(buffer, position, bytes(view[walked[-1] - 4: walked[-1]]), size, fits, fits)
        starts.extend(range(position + 4, position + 4 + run * size, size))
        position += run * size
        guess, walk = (guess * 4, 1) if run == guess else (_FIRST_GUESS, _WALK_AFTER_MISS)
    return starts, position, False


def _sizes_and_heads(starts: list[int], end: int) -> tuple[list[int], list[int]]:
    """Payload sizes and RDW offsets of consecutive V records, from their payload offsets and where the last
    one ends (each record ends where the next one's RDW starts)."""
    heads = np.asarray(starts, np.int64) - 4
    return (np.diff(heads, append=end) - 4).tolist(), heads.tolist()


def _rdw_chain(view: memoryview, position: int, stop: int, most: int, until: int,
               rule: tuple[int, int, int, int, int, int]) -> tuple[list[int], int, bool]:
    """:func:`rdw_records` one record at a time: a tight loop of byte reads (about 0.2 µs a record)."""
    high, low, reserved, other, subtract, least = rule
    starts: list[int] = []
    append = starts.append
    bound = min(until, stop - 3)  # a record starts before ``until``, and its RDW is inside ``stop``
    for _ in range(most):
        if position >= bound:
            break
        size = (view[position + high] << 8 | view[position + low]) - subtract
        if view[position + reserved] or view[position + other] or size < least:
            return starts, position, True
        after = position + 4 + size
        if after > stop:
            break
        append(position + 4)
        position = after
    return starts, position, False


def _same_header_run(buffer: np.ndarray, position: int, head: bytes, size: int, most: int,
                     cap: int) -> int:
    """How many of the next ``min(most, cap)`` records at ``position`` have the header ``head`` (so the same
    ``size``): one vectorised comparison instead of a walk record by record."""
    most = min(most, cap)
    if most <= 0:
        return 0
    data = np.frombuffer(buffer, np.uint8, count=position + most * size)[position:]
    heads = data.reshape(most, size)[:, :4]
    same = (heads == np.frombuffer(head, np.uint8)).all(axis=1)
    run = most if same.all() else int(np.argmin(same))
    del data, heads
    return run


def data_range(path: str, start_offset: int, end_offset: int) -> tuple[int, int]:
    """``[start, end)`` of a file's records, past its header and before its footer (gzip: decompressed offsets;
    the end is then only the footer's length, applied while streaming)."""
    if is_gzip(path):
        return start_offset, end_offset
    size = os.path.getsize(path)
    return min(start_offset, size), max(min(start_offset, size), size - end_offset)
