"""The public plugin contract: pinned, so it changes only on purpose."""

from __future__ import annotations

import dataclasses
import logging
import re

import pyarrow as pa
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import ValidationError

import dativo.api as api
from dativo.api import (
    API_VERSION,
    ArrowStreamExportable,
    Context,
    Dataset,
    NoOptions,
    Reader,
    Split,
    WrittenFiles,
    Writer,
)
from tests.fixtures import plugins


def test_public_names_are_pinned() -> None:
    assert api.__all__ == [
        "API_VERSION",
        "ArrowStream",
        "ArrowStreamExportable",
        "CommitFailed",
        "CommitInfo",
        "CommitRecord",
        "CommitStateUnknown",
        "ConfigError",
        "ConnectionFailed",
        "Context",
        "Dataset",
        "DatasetStores",
        "DativoError",
        "Mode",
        "NoOptions",
        "ParquetSink",
        "PluginFailed",
        "Reader",
        "Role",
        "S3Settings",
        "SchemaMismatch",
        "Split",
        "State",
        "Store",
        "StoreOptions",
        "Writer",
        "WrittenFiles",
        "config_from_schema",
        "open_store",
    ]
    assert api.__all__ == sorted(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)


def test_api_version_is_semver() -> None:
    assert re.fullmatch(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", API_VERSION)
    assert Version(API_VERSION) in SpecifierSet(Reader.api_version)
    assert Version(API_VERSION) in SpecifierSet(Writer.api_version)


def test_only_read_is_abstract_in_a_reader() -> None:
    assert Reader.__abstractmethods__ == frozenset({"read"})
    assert Writer.__abstractmethods__ == frozenset({"write", "commit"})


def ctx(**kwargs: object) -> Context:
    return Context(job="orders", run_id="r1", plugin="p", logger=logging.getLogger("t"), **kwargs)  # type: ignore[arg-type]


def test_reader_defaults() -> None:
    reader = plugins.GoodReader(plugins.Options(), ctx())
    assert reader.discover() == [Dataset(name="orders", schema=plugins.SCHEMA)]
    assert reader.plan(reader.discover()[0], None) == [Split(dataset="orders")]
    assert reader.check() is None and reader.close() is None
    assert plugins.UndeclaredReader(NoOptions(), ctx()).discover() == [Dataset(name="orders", schema=None)]
    assert (Reader.version, Reader.language, Reader.api_version, Reader.Config) == ("0.0.0", "python", ">=1,<2", NoOptions)


def test_writer_defaults() -> None:
    writer = plugins.MemoryWriter(NoOptions(), ctx())
    assert writer.state(Dataset("orders")) is None
    assert writer.prepare(Dataset("orders"), plugins.SCHEMA, "append") is None
    assert writer.abort([]) is None and writer.check() is None


def test_no_options_accepts_none() -> None:
    NoOptions()
    with pytest.raises(ValidationError):
        NoOptions.model_validate({"rows": 1})


def test_value_types() -> None:
    split = Split("orders")
    assert (split.id, dict(split.params)) == ("0", {})
    written = WrittenFiles("orders", "0")
    assert (written.files, written.rows, written.bytes, written.extra) == ([], 0, 0, {})
    context = ctx()
    assert (context.settings, context.parallelism, context.cursor, context.work_dir) == ({}, 1, None, ".dativo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.job = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.id = "1"  # type: ignore[misc]
    assert Dataset("d").primary_key == () and Dataset("d").cursor_candidates == ()
    assert api.CommitInfo("c1") == api.CommitInfo(commit_id="c1", rows=0, no_op=False)


def test_arrow_stream_protocol() -> None:
    assert isinstance(pa.table({"a": [1]}), ArrowStreamExportable)
    assert isinstance(plugins.CStreamReader._Stream(pa.table({})), ArrowStreamExportable)
    assert not isinstance([pa.record_batch({"a": [1]})], ArrowStreamExportable)
