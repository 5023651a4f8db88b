"""Running the ``cobol`` reader as the engine does, on files the tests write."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
from dativo_cobol.reader import CobolConfig, CobolReader

from dativo.api import Context


def make_reader(tmp_path: Path, data: bytes | dict[str, bytes], copybook: str, **options: Any) -> CobolReader:
    """A reader of ``data`` (one file, or several by name) laid out by ``copybook``."""
    (tmp_path / "test.cpy").write_text(copybook)
    files = data if isinstance(data, dict) else {"test.dat": data}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    path = str(tmp_path / "test.dat") if not isinstance(data, dict) else [str(tmp_path / n) for n in files]
    config = CobolConfig(path=path, copybook=str(tmp_path / "test.cpy"), **options)
    ctx = Context(job="cobol_test", run_id="r1", plugin="cobol", logger=logging.getLogger("test.cobol"))
    return CobolReader(config, ctx)


def read_all(reader: CobolReader) -> dict[str, pa.Table]:
    """Check, discover, plan and read every split of every dataset."""
    reader.check()
    out = {}
    for dataset in reader.discover():
        batches = [b for split in reader.plan(dataset, None) for b in reader.read(split)]
        assert dataset.schema is not None
        out[dataset.name] = pa.Table.from_batches(batches, schema=dataset.schema)
    reader.close()
    return out


def read(tmp_path: Path, data: bytes | dict[str, bytes], copybook: str, **options: Any) -> pa.Table:
    """The one dataset's rows."""
    tables = read_all(make_reader(tmp_path, data, copybook, **options))
    assert len(tables) == 1
    return next(iter(tables.values()))
