"""The ``cobol`` reader: mainframe record files described by a COBOL copybook, built on ``dativo.api`` only."""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dativo.api import Context, Dataset, Reader, Split, State
from dativo.errors import ConfigError, PluginFailed
from dativo_cobol.copybook import Layout, load_copybook
from dativo_cobol.decoder import Decoder, Issue, single_byte_tables

_MiB = 1 << 20
_BAD_DATA_HINT = ("Check that the copybook describes this file (and options.encoding, options.record_format); "
                  "or set on_error: reject and reject_path to set bad records aside.")


class CobolConfig(BaseModel):
    """Options of the ``cobol`` reader (the job's ``source.reader.options``)."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str] = Field(description="A data file, a directory, a glob (`in/*.dat`), or a list of them. "
                                  "Relative paths start at the current directory.")
    copybook: str = Field(description="The COBOL copybook describing one record.")
    encoding: str = Field("cp037", description="Single-byte EBCDIC code page of text (PIC X) fields, as a Python "
                          "codec name: cp037, cp500, cp1047, cp273, cp1140 …")
    record_format: Literal["fixed", "rdw"] = Field(
        "fixed", description="`fixed`: records of the copybook's length back to back; `rdw`: each record is "
        "preceded by a 4-byte record descriptor word (variable length).")
    trim: bool = Field(True, description="Drop trailing spaces of text fields.")
    on_error: Literal["fail", "reject"] = Field(
        "fail", description="A record with an invalid number: stop the job (`fail`) or write the raw record to "
        "`reject_path` and go on (`reject`).")
    reject_path: str | None = Field(None, description="File receiving rejected records, raw, in the input's "
                                    "record format (replaced by each run). Required with on_error: reject.")
    batch_rows: int = Field(65_536, ge=1, le=10_000_000, description="Records per Arrow batch.")
    split_mb: float = Field(64.0, gt=0, description="Size of the byte ranges that fixed-length files are read in "
                            "parallel by (rounded to whole records).")
    redefines: list[str] = Field(default_factory=list, description="REDEFINES alternatives to read instead of "
                                 "the first layout (the redefined item), by COBOL name.")
    dataset: str | None = Field(None, description="Name of the dataset (default: the job's name).")

    @field_validator("encoding")
    @classmethod
    def _single_byte(cls, value: str) -> str:
        try:
            single_byte_tables(value)
        except LookupError:
            raise ValueError(f"unknown encoding '{value}'; use a Python codec name such as cp037") from None
        return value

    @model_validator(mode="after")
    def _reject_needs_path(self) -> CobolConfig:
        if self.on_error == "reject" and not self.reject_path:
            raise ValueError("on_error is reject but no reject_path is set; add reject_path: <file>")
        return self


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


class CobolReader(Reader):
    """Reads EBCDIC record files laid out by a COBOL copybook, decoding whole batches with numpy.

    Fixed-length files are planned as record-aligned byte ranges of ``split_mb`` that the engine reads in
    parallel; RDW files are read one split per file (a record boundary cannot be found mid-file).
    """

    Config: ClassVar[type[BaseModel]] = CobolConfig
    config: CobolConfig
    version: ClassVar[str] = "1.0.0"

    def __init__(self, config: BaseModel, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._reject_lock = threading.Lock()
        self._rejected = 0

    # --- configuration --------------------------------------------------------------------------------

    @cached_property
    def layout(self) -> Layout:
        """The parsed copybook."""
        return load_copybook(Path(os.path.abspath(self.config.copybook)), self.config.redefines)

    @cached_property
    def decoder(self) -> Decoder:
        """The batch decoder of this layout."""
        return Decoder(self.layout, self.config.encoding, self.config.trim)

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
        _ = self.layout

    def discover(self) -> list[Dataset]:
        """One dataset: every matched file, with the schema the copybook gives."""
        return [Dataset(name=self.config.dataset or self.ctx.job, schema=self.layout.schema)]

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """Record-aligned byte ranges of ``split_mb`` for fixed-length files; one split per RDW file.

        Raises:
            PluginFailed: A fixed-length file's size is not a whole number of records.
        """
        length = self.layout.length
        splits: list[Split] = []
        step = max(1, int(self.config.split_mb * _MiB) // length) * length
        for path in self._files():
            size = os.path.getsize(path)
            if self.config.record_format == "rdw":
                splits.append(Split(dataset.name, str(len(splits)), {"path": path, "start": 0, "end": size}))
                continue
            if size % length:
                raise PluginFailed(
                    f"{path} is {size} bytes, which is not a whole number of {length}-byte records (the "
                    f"copybook's record length): {size // length} records and {size % length} bytes are left "
                    "over",
                    hint="Check that the copybook matches the file; if records start with a 4-byte RDW, set "
                    "record_format: rdw.",
                )
            for start in range(0, size, step):
                params = {"path": path, "start": start, "end": min(size, start + step)}
                splits.append(Split(dataset.name, str(len(splits)), params))
        if self.config.reject_path:
            Path(self.config.reject_path).unlink(missing_ok=True)  # each run's rejects replace the last's
        return splits

    # --- reading --------------------------------------------------------------------------------------

    def read(self, split: Split) -> Iterator[pa.RecordBatch]:
        """Stream one split's records in batches of ``batch_rows``."""
        path, start, end = str(split.params["path"]), int(split.params["start"]), int(split.params["end"])
        if self.config.record_format == "rdw":
            return self._read_rdw(path)
        return self._read_fixed(path, start, end)

    def _read_fixed(self, path: str, start: int, end: int) -> Iterator[pa.RecordBatch]:
        length = self.layout.length
        with open(path, "rb") as file:
            file.seek(start)
            position = start
            while position < end:
                data = file.read(min(self.config.batch_rows * length, end - position))
                if not data or len(data) % length:
                    raise PluginFailed(f"{path} changed while it was read (it ended at byte "
                                       f"{position + len(data)})", hint="Read files that are complete.")
                records = np.frombuffer(data, np.uint8).reshape(-1, length)
                first = position // length
                yield self._batch(records, None, path, first,
                                  lambda rows, records=records: [records[r].tobytes() for r in rows],
                                  lambda row, first=first: (first + row) * length)
                position += len(data)

    def _read_rdw(self, path: str) -> Iterator[pa.RecordBatch]:
        length = self.layout.length
        chunk = max(_MiB, min(64 * _MiB, self.config.batch_rows * (length + 4)))
        buffer = bytearray()
        base = record = 0  # file offset of buffer[0], records emitted so far
        position = 0
        starts: list[int] = []
        sizes: list[int] = []
        eof = False
        guess, skip = 64, 0  # how many same-length records to check at once; when to try that next
        with open(path, "rb") as file:
            while True:
                while len(starts) < self.config.batch_rows and position + 4 <= len(buffer):
                    size = (buffer[position] << 8) | buffer[position + 1]
                    if size < 4 or buffer[position + 2] or buffer[position + 3]:
                        rdw = bytes(buffer[position: position + 4]).hex().upper()
                        raise PluginFailed(
                            f"{path}: record {record + len(starts) + 1} at byte {base + position} starts with "
                            f"X'{rdw}', which is not a record descriptor word (2-byte length ≥ 4, then X'0000')",
                            hint="Check record_format: a file without RDWs is fixed; block descriptor words "
                            "(RECFM=VB with BDWs) are not supported.",
                        )
                    if position + size > len(buffer):
                        break
                    starts.append(position + 4)
                    sizes.append(size - 4)
                    position += size
                    if len(starts) >= skip:
                        run = _same_length_run(buffer, position, size, min(
                            guess, self.config.batch_rows - len(starts), (len(buffer) - position) // size))
                        starts.extend(range(position + 4, position + 4 + run * size, size))
                        sizes.extend([size - 4] * run)
                        position += run * size
                        # Grow the guess while records keep their length; after a miss, go record by record
                        # for a while, so that files of mixed lengths do not pay for guessing.
                        guess, skip = (guess * 4, 0) if run == guess else (64, len(starts) + 256)
                if starts and (len(starts) == self.config.batch_rows or eof):
                    yield self._rdw_batch(buffer, starts, sizes, path, record, base)
                    record += len(starts)
                    del buffer[:position]
                    base += position
                    position = 0
                    starts, sizes, skip = [], [], 0
                    continue
                if eof:
                    if position < len(buffer):
                        raise PluginFailed(f"{path}: the last record (at byte {base + position}) is cut short: "
                                           f"the file ends {len(buffer) - position} bytes into it",
                                           hint="Check that the file was transferred completely and in binary.")
                    return
                data = file.read(chunk)
                eof = not data
                buffer += data

    def _rdw_batch(self, buffer: bytearray, starts: list[int], sizes: list[int], path: str, first: int,
                   base: int) -> pa.RecordBatch:
        length = self.layout.length
        end = starts[-1] + sizes[-1]
        data = np.zeros(end + length, np.uint8)  # a copy (the bytearray shrinks after this), padded at the end
        data[:end] = np.frombuffer(buffer, np.uint8, count=end)
        # One row per record: rows of a window view, copied whole. Bytes past a short record belong to the
        # next one (or the padding); `avail` marks those fields absent.
        records = np.lib.stride_tricks.sliding_window_view(data, length)[np.asarray(starts, np.int64)]
        avail = np.asarray(sizes, np.int64)
        return self._batch(records, avail, path, first,
                           lambda rows: [data[starts[r] - 4: starts[r] + sizes[r]].tobytes() for r in rows],
                           lambda row: base + starts[row] - 4)

    def _batch(self, records: np.ndarray, avail: np.ndarray | None, path: str, first: int,
               raw: Callable[[np.ndarray], list[bytes]], offset: Callable[[int], int]) -> pa.RecordBatch:
        """Decode a batch; fail on, or set aside, records with invalid numbers."""
        batch, issues = self.decoder.decode(records, avail)
        if not issues:
            return batch
        rows = records.shape[0]
        bad = np.zeros(rows, bool)
        for issue in issues:
            bad |= issue.records(rows)
        if self.config.on_error == "fail":
            row = int(np.argmax(bad))
            issue: Issue = next(i for i in issues if i.records(rows)[row])
            others = int(bad.sum()) - 1
            more = f" ({others} more bad records in the same batch)" if others else ""
            raise PluginFailed(f"{path}: record {first + row + 1} (at byte {offset(row)}): "
                               f"{issue.describe(row, rows)}{more}", hint=_BAD_DATA_HINT)
        self._reject(raw(np.flatnonzero(bad)), path)
        return batch.filter(pa.array(~bad))

    def _reject(self, records: list[bytes], path: str) -> None:
        reject_path = Path(os.path.abspath(str(self.config.reject_path)))
        with self._reject_lock:  # splits run in parallel threads; a record is written whole
            reject_path.parent.mkdir(parents=True, exist_ok=True)
            with open(reject_path, "ab") as file:
                file.write(b"".join(records))
            self._rejected += len(records)
        self.ctx.logger.warning("%d bad records of %s written to %s", len(records), path, reject_path)

    def close(self) -> None:
        """Log how many records were rejected in all."""
        if self._rejected:
            self.ctx.logger.warning("%d records rejected in all (written to %s)", self._rejected,
                                    self.config.reject_path)


def _same_length_run(buffer: bytearray, position: int, size: int, most: int) -> int:
    """How many of the next ``most`` records at ``position`` have a valid RDW of the same ``size`` (vectorised:
    the RDW chain must otherwise be walked record by record)."""
    if most <= 0:
        return 0
    data = np.frombuffer(buffer, np.uint8, count=position + most * size)[position:]
    heads = data.reshape(most, size)[:, :4]
    same = (heads[:, 0] == size >> 8) & (heads[:, 1] == size & 0xFF) & (heads[:, 2] == 0) & (heads[:, 3] == 0)
    run = most if same.all() else int(np.argmin(same))
    del data, heads  # release the export: the bytearray is resized later
    return run
