"""The ``cobol`` reader: mainframe record files described by a COBOL copybook, built on ``dativo.api`` only.

Module map: ``config`` (options) → ``copybook`` (text → layout → Arrow schema) → ``records`` (bytes → records
of a record format) → ``segments`` (which layout each record holds) → ``decoder`` (records → Arrow), with
``codepages`` for text and DISPLAY numbers. This module plans splits and joins the steps per batch.
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from dativo.api import Context, Dataset, Reader, Split, State
from dativo.errors import ConfigError, PluginFailed
from dativo_cobol.codepages import CodePage, code_page
from dativo_cobol.config import CobolConfig
from dativo_cobol.copybook import Item, Layout, load_copybook
from dativo_cobol.decoder import Decoder, Issue, _parse_display
from dativo_cobol.records import Chunk, Framing, Headers, data_range, is_gzip
from dativo_cobol.segments import Hierarchy, active, field_reader, segment_values

__all__ = ["CobolConfig", "CobolReader"]

_MiB = 1 << 20
_BAD_DATA_HINT = ("Check that the copybook describes this file (and options.encoding, options.record_format); "
                  "or set on_invalid_number: null (or reject_record with reject_path) to go on.")


def _expand(paths: str | list[str]) -> list[str]:
    """Files, directories and globs to a sorted list of absolute file paths (hidden files skipped)."""
    files: list[str] = []
    for pattern in [paths] if isinstance(paths, str) else paths:
        expanded = os.path.abspath(os.path.expanduser(pattern))
        matches = sorted(glob.glob(expanded, recursive=True)) if glob.has_magic(expanded) else [expanded]
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, names in os.walk(match):
                    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                    files += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))]
            elif os.path.isfile(match):
                files.append(match)
    return files


INVALID_NUMBERS = "invalid_numbers."
"""Counter prefix of the invalid numbers read as null, by field (``invalid_numbers.ACCT-BAL``)."""
REJECTED_RECORDS = "rejected_records"
"""Counter of the records written to the reject file."""


class CobolReader(Reader):
    """Reads mainframe record files laid out by a COBOL copybook, decoding whole batches with numpy.

    Files are planned as byte ranges of about ``split_mb`` that start at a record (F), line (D), block (VB,
    FB; VBS: one whose first segment starts a record), a record found by walking the RDWs once (V) or a
    segment that starts a record (VS); the engine reads them in parallel. Gzip files, files
    whose record lengths are inside the records, and hierarchical files are one split each.
    """

    Config: ClassVar[type[BaseModel]] = CobolConfig
    config: CobolConfig
    version: ClassVar[str] = "1.0.0"
    api_version: ClassVar[str] = ">=1.3,<2"  # Context.count

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._lock = threading.Lock()
        self._decoders: dict[tuple[str, tuple[tuple[str, int], ...]], Decoder] = {}

    # --- configuration --------------------------------------------------------------------------------

    @cached_property
    def code_page(self) -> CodePage:
        """The code page of text and DISPLAY numbers."""
        return code_page(self.config.encoding)

    @cached_property
    def segment_ids(self) -> dict[str, list[str]]:
        """REDEFINES alternative (upper-case name) → its segment ids."""
        return self.config.segment_ids()

    def _load(self, picks: list[str], segments: list[str]) -> Layout:
        return load_copybook(Path(os.path.abspath(self.config.copybook)), picks, segments,
                             self.config.floating_point_format)

    @cached_property
    def layout(self) -> Layout:
        """The parsed copybook (in a wide multi-segment read, with every mapped alternative)."""
        wide = list(self.segment_ids) if self.config.segment_output == "wide" else []
        layout = self._load(self.config.redefines, wide)
        self._check_layout(layout)
        return layout

    def _layouts(self) -> dict[str, Layout]:
        """Dataset name → its layout (one per segment with ``segment_output: per_segment``)."""
        name = self.config.dataset or self.ctx.job
        if self.config.segment_output == "wide":
            return {name: self.layout}
        out = {}
        for segment in self.segment_ids:
            out[f"{name}_{segment.lower().replace('-', '_')}"] = self._load([*self.config.redefines, segment], [])
        return out

    def _check_layout(self, layout: Layout) -> None:
        tables = layout.tables()
        if self.config.variable_size_occurs and tables:
            root = layout.root
            assert root is not None
            first = min(t.absolute for t in tables)
            for table in tables:
                counter = layout.find(table.depending_on or "")
                assert counter is not None
                if counter.absolute + counter.size > first or _repeats(root, counter):
                    raise ConfigError(
                        f"variable_size_occurs: the counter {counter.name} of {table.name} must come before the "
                        "first OCCURS … DEPENDING ON table and outside any table",
                        hint="Set variable_size_occurs: false if the record keeps room for the largest count.")
        if self.config.segment_field:
            field_reader(layout, self.config.segment_field, self.code_page, "segment_field")

    @cached_property
    def framing(self) -> Framing:
        """How records are cut from the files."""
        cfg = self.config
        headers = Headers(cfg.is_rdw_big_endian, cfg.is_rdw_part_of_record_length, cfg.rdw_adjustment,
                          cfg.is_bdw_big_endian, cfg.bdw_adjustment)
        length = self.layout.length
        length_of, least = self._length_of()
        return Framing(cfg.record_format, length, cfg.record_length or length, headers, cfg.batch_rows,
                       length_of, least)

    def _length_of(self) -> tuple[Callable[[bytes, int], int] | None, int]:
        """F records whose length is inside them: a length field, or variable-size OCCURS tables."""
        cfg, layout = self.config, self.layout
        if cfg.record_format != "F":
            return None, 0
        if cfg.record_length_field:
            item = layout.find(cfg.record_length_field)
            if item is None or item.kind not in ("zoned", "packed", "binary") or item.scale:
                raise ConfigError(f"options.record_length_field names {cfg.record_length_field}, which is not an "
                                  "integer field of the copybook", hint="Name the PIC 9 field holding the length.")
            cp, adjust = self.code_page, cfg.rdw_adjustment

            def from_field(data: bytes, offset: int) -> int:
                value = _scalar(item, data[item.absolute: item.absolute + item.size], cp)
                size = -1 if value is None else value + adjust
                if size < item.absolute + item.size:
                    raise PluginFailed(f"record at byte {offset}: its length field {item.name} holds "
                                       f"X'{data[item.absolute: item.absolute + item.size].hex().upper()}', which "
                                       "is not a possible record length (it must cover the field itself)",
                                       hint="Check record_length_field and rdw_adjustment.")
                return size

            return from_field, item.absolute + item.size
        tables = layout.tables()
        if not (cfg.variable_size_occurs and tables):
            return None, 0
        counters = {t.name.upper(): layout.find(t.depending_on or "") for t in tables}
        least = max(c.absolute + c.size for c in counters.values() if c is not None)
        sizes: dict[tuple[int, ...], int] = {}
        cp = self.code_page

        def from_counts(data: bytes, offset: int) -> int:
            counts = self._record_counts(data, counters, cp, offset)
            key = tuple(counts.values())
            if key not in sizes:
                sizes[key] = layout.concrete(counts).length
            return sizes[key]

        return from_counts, least

    def _record_counts(self, data: bytes, counters: dict[str, Item | None], cp: CodePage,
                       offset: int) -> dict[str, int]:
        counts = {}
        for name, counter in counters.items():
            assert counter is not None
            table = self.layout.find(name)
            assert table is not None and table.occurs is not None
            value = _scalar(counter, data[counter.absolute: counter.absolute + counter.size], cp)
            if value is None or not table.occurs_min <= value <= table.occurs:
                raise PluginFailed(f"record at byte {offset}: {counter.name} holds X'"
                                   f"{data[counter.absolute: counter.absolute + counter.size].hex().upper()}', "
                                   f"which is no count of {table.name} (OCCURS {table.occurs_min} TO "
                                   f"{table.occurs})", hint=_BAD_DATA_HINT)
            counts[name] = value
        return counts

    def _decoder(self, layout: Layout, counts: tuple[tuple[str, int], ...] = ()) -> Decoder:
        key = (str(id(layout)), counts)
        with self._lock:
            if key not in self._decoders:
                concrete = layout.concrete(dict(counts)) if counts else layout
                self._decoders[key] = Decoder(concrete, self.code_page, self.config.trim,
                                              self.config.on_invalid_number)
            return self._decoders[key]

    def _files(self) -> list[str]:
        files = _expand(self.config.path)
        if not files:
            raise ConfigError(f"options.path {self.config.path!r} matches no files (relative paths start at "
                              f"{Path.cwd()})", hint="Check the path or glob.")
        return files

    def check(self) -> None:
        """Parse the copybook and find the files, so that mistakes stop the job before any data moves."""
        if self.ctx.settings:  # keys beside `type:` are not passed to a custom plugin's Config
            keys = ", ".join(f"source.{k}" for k in self.ctx.settings)
            raise ConfigError(f"{keys}: the cobol reader takes its settings under source.reader.options",
                              hint="Move them into source.reader.options.")
        self._files()
        self._layouts()
        _ = self.framing

    def discover(self) -> list[Dataset]:
        """One dataset (or one per segment), with the schema the copybook gives."""
        extra = [pa.field(f"seg_id{k}", pa.string()) for k in range(len(self.config.segment_id_levels))]
        return [Dataset(name=name, schema=pa.schema([*layout.schema, *extra]))
                for name, layout in self._layouts().items()]

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """Byte ranges of about ``split_mb`` that start at record boundaries (see the class docstring).

        Raises:
            PluginFailed: A fixed-length file's size is not a whole number of records, or a descriptor word
                is broken.
        """
        cfg = self.config
        framing = self.framing
        splits: list[Split] = []
        step = max(1, int(cfg.split_mb * _MiB))
        whole = bool(cfg.segment_id_levels)  # ancestors are found in record order, from the file's start
        for index, path in enumerate(self._files()):
            start, end = data_range(path, cfg.file_start_offset, cfg.file_end_offset)
            if is_gzip(path):
                splits.append(Split(dataset.name, str(len(splits)), {
                    "path": path, "start": start, "end": -1, "first": 0, "data_end": end, "file": index}))
                continue
            if framing.fmt == "F" and framing.length_of is None and (end - start) % framing.record_length:
                size = framing.record_length
                raise PluginFailed(
                    f"{path} holds {end - start} bytes of records, which is not a whole number of {size}-byte "
                    f"records (the copybook's record length): {(end - start) // size} records and "
                    f"{(end - start) % size} bytes are left over",
                    hint="Check that the copybook matches the file and file_start_offset/file_end_offset; if "
                    "records start with a 4-byte RDW, set record_format: V.")
            if framing.fmt == "V" and end > start:
                self._check_rdw_reading(path, start, end)
            cuts = [(start, 0)] if whole else framing.boundaries(path, start, end, step)
            for i, (offset, first) in enumerate(cuts):
                stop = cuts[i + 1][0] if i + 1 < len(cuts) else end
                splits.append(Split(dataset.name, str(len(splits)), {
                    "path": path, "start": offset, "end": stop, "first": first, "data_end": end, "file": index}))
        if cfg.reject_path:
            Path(cfg.reject_path).unlink(missing_ok=True)  # each run's rejects replace the last's
        return splits

    def _check_rdw_reading(self, path: str, start: int, end: int) -> None:
        """Walk the first RDWs as configured; if that fails where the other length rule succeeds, say so (a
        length that excludes the header would otherwise be split wrongly from record 1 on)."""
        with open(path, "rb") as file:
            file.seek(start)
            data = file.read(min(end - start, 64 * 1024))

        def walks(headers: Headers) -> bool:
            position, seen = 0, 0
            while position + 4 <= len(data) and seen < 32:
                size = headers.rdw(data[position: position + 4])
                if size is None or (position + 4 + size > len(data) and len(data) == end - start):
                    return False
                position += 4 + size
                seen += 1
            return True

        headers = self.framing.headers
        if walks(headers):
            return
        other = Headers(headers.rdw_big_endian, not headers.rdw_includes_header, headers.rdw_adjustment)
        swapped = Headers(not headers.rdw_big_endian, headers.rdw_includes_header, headers.rdw_adjustment)
        for candidate, fix in ((other, f"is_rdw_part_of_record_length: {str(not headers.rdw_includes_header).lower()}"),
                               (swapped, f"is_rdw_big_endian: {str(not headers.rdw_big_endian).lower()}")):
            if walks(candidate):
                raise PluginFailed(
                    f"{path}: the RDWs at the start of the file (byte {start} on) do not chain up as configured: "
                    f"the record lengths do not lead from one RDW to the next; with {fix} they do",
                    hint=f"Set {fix} in source.reader.options.")

    # --- reading --------------------------------------------------------------------------------------

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        """Stream one split's records in batches of ``batch_rows``."""
        params = split.params
        path, start, end = str(params["path"]), int(params["start"]), int(params["end"])
        layouts = self._layouts()
        layout = layouts.get(split.dataset, self.layout)
        segment = None
        if self.config.segment_output == "per_segment":
            segment = next(s for s, n in zip(self.segment_ids, layouts, strict=True) if n == split.dataset)
        hierarchy = None
        if self.config.segment_id_levels:
            levels = [[v] if isinstance(v, str) else list(v) for v in self.config.segment_id_levels]
            hierarchy = Hierarchy(levels, self.config.segment_id_prefix, int(params.get("file", 0)))
        chunks = self.framing.chunks(path, start, None if end < 0 else end, int(params["first"]),
                                     int(params["data_end"]))
        for chunk in chunks:
            batch = self._batch(chunk, layout, segment, hierarchy, path)
            if batch is not None:
                yield batch

    def _batch(self, chunk: Chunk, layout: Layout, segment: str | None, hierarchy: Hierarchy | None,
               path: str) -> pa.RecordBatch | None:
        records, avail = chunk.records, chunk.avail
        actives: dict[str, np.ndarray] = {}
        extra: list[pa.Array] = []
        keep = None
        if self.config.segment_field:
            reader = field_reader(self.layout, self.config.segment_field, self.code_page, "segment_field")
            values = segment_values(reader, records, avail)
            actives = active(values, self.segment_ids)
            if hierarchy is not None:
                extra = hierarchy.columns(values, chunk.first)
            if segment is not None:
                keep = actives[segment]
                actives = {}
        if keep is not None:
            rows = np.flatnonzero(keep)
            if not len(rows):
                return None
            chunk = Chunk(records[rows], None if avail is None else avail[rows], chunk.first, chunk.offsets[rows],
                          lambda r, raw=chunk.raw, rows=rows: raw(rows[r]))
            chunk_numbers = rows
            records, avail = chunk.records, chunk.avail
            extra = [e.take(pa.array(rows)) for e in extra]
        else:
            chunk_numbers = np.arange(records.shape[0])
        batch, issues = self._decode(layout, records, avail, actives, chunk)
        if extra:
            batch = pa.RecordBatch.from_arrays([*batch.columns, *extra],
                                               names=[*batch.schema.names, *[f"seg_id{k}" for k in range(len(extra))]])
        if not issues:
            return batch
        return self._settle(batch, issues, chunk, chunk_numbers, path)

    def _decode(self, layout: Layout, records: np.ndarray, avail: np.ndarray | None,
                actives: dict[str, np.ndarray], chunk: Chunk) -> tuple[pa.RecordBatch, list[Issue]]:
        tables = layout.tables()
        if not (self.config.variable_size_occurs and tables):
            return self._decoder(layout).decode(records, avail, actives)
        # Variable-size tables: records with the same counts share a layout; decode each group at once.
        counters = [(t.name.upper(), layout.find(t.depending_on or "")) for t in tables]
        columns = []
        for name, counter in counters:
            assert counter is not None
            reader = field_reader(layout, counter.name, self.code_page, "variable_size_occurs")
            values = reader.decode(records, avail)[0].column(0).to_numpy(zero_copy_only=False)
            table = layout.find(name)
            assert table is not None and table.occurs is not None
            values = np.nan_to_num(values.astype(np.float64), nan=-1).astype(np.int64)
            wrong = (values < table.occurs_min) | (values > table.occurs)
            if wrong.any():
                row = int(np.argmax(wrong))
                raise PluginFailed(f"record at byte {int(chunk.offsets[row])}: {counter.name} holds {values[row]}, "
                                   f"which is no count of {table.name} (OCCURS {table.occurs_min} TO "
                                   f"{table.occurs})", hint=_BAD_DATA_HINT)
            columns.append(values)
        keys = np.stack(columns, axis=1)
        unique, group = np.unique(keys, axis=0, return_inverse=True)
        group = group.reshape(-1)
        parts: list[pa.RecordBatch] = []
        issues: list[Issue] = []
        order = []
        for g, counts in enumerate(unique):
            rows = np.flatnonzero(group == g)
            decoder = self._decoder(layout, tuple((n, int(c)) for (n, _), c in zip(counters, counts, strict=True)))
            sub_active = {k: v[rows] for k, v in actives.items()}
            batch, found = decoder.decode(records[rows], None if avail is None else avail[rows], sub_active)
            parts.append(batch)
            for issue in found:  # back to the rows of the whole chunk
                bad = np.zeros((records.shape[0], issue.bad.size // max(1, len(rows))), bool)
                bad[rows] = issue.bad.reshape(len(rows), -1)
                issues.append(Issue(issue.item, bad.reshape(-1), _remap(issue, rows, bad.shape[1]),
                                    issue.occurs, issue.what))
            order.append(rows)
        table_ = pa.Table.from_batches(parts, schema=layout.schema)
        inverse = np.empty(records.shape[0], np.int64)
        inverse[np.concatenate(order)] = np.arange(records.shape[0])
        return table_.take(pa.array(inverse)).combine_chunks().to_batches()[0], issues

    def _settle(self, batch: pa.RecordBatch, issues: list[Issue], chunk: Chunk, numbers: np.ndarray,
                path: str) -> pa.RecordBatch:
        """Apply on_invalid_number to a batch with invalid numbers."""
        rows = batch.num_rows
        bad = np.zeros(rows, bool)
        for issue in issues:
            bad |= issue.records(rows)
        policy = self.config.on_invalid_number
        if policy == "null":
            for issue in issues:
                self.ctx.count(f"{INVALID_NUMBERS}{issue.item.name}", int(issue.bad.sum()))
            return batch
        if policy == "fail":
            row = int(np.argmax(bad))
            issue = next(i for i in issues if i.records(rows)[row])
            others = int(bad.sum()) - 1
            more = f" ({others} more bad records in the same batch)" if others else ""
            number = f"record {chunk.first + int(numbers[row]) + 1} " if chunk.first >= 0 else "record "
            raise PluginFailed(f"{path}: {number}(at byte {int(chunk.offsets[row])}): "
                               f"{issue.describe(row, rows)}{more}", hint=_BAD_DATA_HINT)
        self._reject(chunk.raw(np.flatnonzero(bad)), path)
        return batch.filter(pa.array(~bad))

    def _reject(self, records: list[bytes], path: str) -> None:
        reject_path = Path(os.path.abspath(str(self.config.reject_path)))
        with self._lock:  # splits run in parallel threads; a record is written whole
            reject_path.parent.mkdir(parents=True, exist_ok=True)
            with open(reject_path, "ab") as file:
                file.write(b"".join(records))
        self.ctx.count(REJECTED_RECORDS, len(records))
        self.ctx.logger.warning("%d bad records of %s written to %s", len(records), path, reject_path)

    def close(self) -> None:
        """Log how many records were rejected and how many invalid numbers were read as null (the run report
        has the same numbers under ``counters``)."""
        counts = self.ctx.counters.snapshot()
        if counts.get(REJECTED_RECORDS):
            self.ctx.logger.warning("%d records rejected in all (written to %s)", counts[REJECTED_RECORDS],
                                    self.config.reject_path)
        for name, count in self.invalid_numbers.items():
            self.ctx.logger.warning("%d invalid values of %s read as null (on_invalid_number: null)", count, name)

    @property
    def invalid_numbers(self) -> dict[str, int]:
        """Invalid numbers read as null so far, by field (with ``on_invalid_number: null``)."""
        return {name.removeprefix(INVALID_NUMBERS): count for name, count in self.ctx.counters.snapshot().items()
                if name.startswith(INVALID_NUMBERS)}


def _repeats(root: Item, target: Item, inside: bool = False) -> bool:
    if root is target:
        return inside
    return any(_repeats(c, target, inside or root.occurs is not None) for c in root.children)


def _remap(issue: Issue, rows: np.ndarray, per: int) -> Callable[[int], bytes]:
    """An issue's raw-bytes lookup by element of the whole chunk, from one by element of a group."""
    position = {int(r): i for i, r in enumerate(rows)}
    return lambda element: issue.raw(position[element // per] * per + element % per)


def _scalar(item: Item, raw: bytes, cp: CodePage) -> int | None:
    """One integer field's value (a record length or a count), or ``None`` if its bytes are not one."""
    if item.kind == "binary":
        return int.from_bytes(raw, "big", signed=item.signed)
    if item.kind == "packed":
        nibbles = raw.hex()
        if not nibbles[:-1].isdigit() or nibbles[-1] not in "abcdef":
            return None
        return -int(nibbles[:-1]) if nibbles[-1] in "bd" else int(nibbles[:-1])
    parsed = _parse_display(raw, item, cp)
    if parsed is None or isinstance(parsed, str):
        return None
    return -parsed[0] if parsed[1] else parsed[0]
