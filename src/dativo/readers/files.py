"""Built-in file readers: ``csv``, ``jsonl`` and ``parquet``, on local paths and globs, via pyarrow.dataset.

Files are grouped into at most ``parallelism`` splits of similar total size; each split streams its files
batch by batch, so memory does not depend on how large the files are.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from functools import cached_property
from typing import ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.json as pajson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dativo.api import ArrowStream, Dataset, Reader, Split, State
from dativo.arrow_types import parse_type
from dativo.errors import ConfigError


class FileConfig(BaseModel):
    """Keys shared by the file readers."""

    model_config = ConfigDict(extra="forbid")

    path: str | list[str] = Field(description="A file, a directory, or a glob (`data/*.csv`); or a list of them.")
    dataset: str | None = Field(None, description="Name of the dataset (default: the job's name).")
    batch_size: int = Field(65_536, ge=1, description="Rows per Arrow batch.")
    column_types: dict[str, str] = Field(
        default_factory=dict, description="Arrow types for some columns, e.g. {id: int64, price: decimal128(12, 2)}."
    )

    @field_validator("column_types")
    @classmethod
    def _types_parse(cls, value: dict[str, str]) -> dict[str, str]:
        for column, text in value.items():
            try:
                parse_type(text)
            except ValueError as exc:
                raise ValueError(f"column '{column}': {exc}") from None
        return value

    def arrow_types(self) -> dict[str, pa.DataType]:
        """``column_types`` parsed."""
        return {column: parse_type(text) for column, text in self.column_types.items()}


class CsvConfig(FileConfig):
    """Options of the ``csv`` reader."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="Field delimiter.")
    quote_char: str = Field('"', min_length=1, max_length=1, description="Quote character.")
    header: bool = Field(True, description="Whether the first line holds the column names.")
    column_names: list[str] | None = Field(None, description="Column names, when there is no header line.")
    null_values: list[str] = Field(default_factory=lambda: ["", "NULL", "null"], description="Strings read as null.")
    encoding: str = Field("utf8", description="Text encoding of the files.")


class JsonlConfig(FileConfig):
    """Options of the ``jsonl`` reader (one JSON object per line)."""


class ParquetConfig(FileConfig):
    """Options of the ``parquet`` reader."""


def expand(paths: str | list[str], suffixes: tuple[str, ...]) -> list[str]:
    """Resolve files, directories and globs into a sorted list of files (hidden files skipped)."""
    files: list[str] = []
    for pattern in [paths] if isinstance(paths, str) else paths:
        expanded = os.path.expanduser(pattern)
        matches = sorted(glob.glob(expanded, recursive=True)) if glob.has_magic(expanded) else [expanded]
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, names in os.walk(match):
                    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                    files += [
                        os.path.join(root, n) for n in sorted(names)
                        if not n.startswith((".", "_")) and n.endswith(suffixes)
                    ]
            elif os.path.isfile(match):
                files.append(match)
    return files


def balance(files: list[str], parts: int) -> list[list[str]]:
    """Group files into at most ``parts`` groups of similar total size, keeping each group's order."""
    parts = max(1, min(parts, len(files)))
    groups: list[list[str]] = [[] for _ in range(parts)]
    sizes = [0] * parts
    for file in sorted(files, key=lambda f: -os.path.getsize(f)):
        smallest = sizes.index(min(sizes))
        groups[smallest].append(file)
        sizes[smallest] += os.path.getsize(file)
    order = {f: i for i, f in enumerate(files)}
    return [sorted(g, key=order.__getitem__) for g in groups if g]


class FileReader(Reader):
    """Common behaviour of the file readers; subclasses say which pyarrow format to use."""

    Config: ClassVar[type[BaseModel]] = FileConfig
    suffixes: ClassVar[tuple[str, ...]] = ()
    config: FileConfig

    def _format(self) -> ds.FileFormat:
        raise NotImplementedError

    def _files(self) -> list[str]:
        files = expand(self.config.path, self.suffixes)
        if not files:
            raise ConfigError(
                f"source.path {self.config.path!r} matches no files (relative paths start at {Path.cwd()})",
                hint="Check the path or glob.",
            )
        return files

    def check(self) -> None:
        """Fail early when the path matches no files."""
        self._files()

    def discover(self) -> list[Dataset]:
        """One dataset: every matched file, with the schema of the first (and ``column_types``)."""
        return [Dataset(name=self.config.dataset or self.ctx.job, schema=self._schema)]

    @cached_property
    def _schema(self) -> pa.Schema:
        files = self._files()
        schema = ds.dataset(files, format=self._format()).schema
        for column, arrow_type in self.config.arrow_types().items():
            if column not in schema.names:
                raise ConfigError(
                    f"source.column_types names '{column}', which is not a column of {files[0]}",
                    hint=f"Columns are: {', '.join(schema.names)}.",
                )
            schema = schema.set(schema.get_field_index(column), pa.field(column, arrow_type))
        return schema

    def plan(self, dataset: Dataset, state: State | None) -> list[Split]:
        """Files grouped into at most ``parallelism`` splits of similar size."""
        groups = balance(self._files(), self.ctx.parallelism)
        return [Split(dataset.name, str(i), {"files": group}) for i, group in enumerate(groups)]

    def read(self, split: Split) -> ArrowStream:
        """Stream the split's files, converted to the discovered schema."""
        dataset = ds.dataset(list(split.params["files"]), format=self._format(), schema=self._schema)
        return dataset.scanner(batch_size=self.config.batch_size).to_reader()


class CsvReader(FileReader):
    """Reads CSV files (header line, delimiter, quoting, nulls and encodings configurable)."""

    Config = CsvConfig
    suffixes = (".csv", ".csv.gz", ".tsv", ".txt")
    config: CsvConfig

    def _format(self) -> ds.FileFormat:
        c = self.config
        return ds.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter=c.delimiter, quote_char=c.quote_char),
            read_options=pacsv.ReadOptions(
                column_names=c.column_names,
                autogenerate_column_names=not c.header and not c.column_names,
                encoding=c.encoding,
                block_size=1 << 22,
            ),
            convert_options=pacsv.ConvertOptions(
                null_values=c.null_values,
                strings_can_be_null=True,
                column_types=c.arrow_types(),
            ),
        )


class JsonlReader(FileReader):
    """Reads newline-delimited JSON files."""

    Config = JsonlConfig
    suffixes = (".jsonl", ".json", ".ndjson", ".jsonl.gz")
    config: JsonlConfig

    def _format(self) -> ds.FileFormat:
        explicit = self.config.arrow_types()
        parse = pajson.ParseOptions(explicit_schema=pa.schema(list(explicit.items()))) if explicit else None
        return ds.JsonFileFormat(parse_options=parse)


class ParquetReader(FileReader):
    """Reads Parquet files."""

    Config = ParquetConfig
    suffixes = (".parquet", ".pq")
    config: ParquetConfig

    def _format(self) -> ds.FileFormat:
        return ds.ParquetFileFormat()
