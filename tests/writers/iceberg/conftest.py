"""Fixtures of the Iceberg writer tests: a writer on a real SQLite catalog in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dativo.writers.iceberg import IcebergWriter
from tests.writers.iceberg.helpers import context

MakeWriter = Callable[..., IcebergWriter]


@pytest.fixture
def make_writer(tmp_path: Path) -> MakeWriter:
    """``make_writer(job="t", **config)``: a writer whose embedded catalog lives in ``tmp_path``."""

    def make(job: str = "t", work_dir: Path | None = None, **config: Any) -> IcebergWriter:
        config.setdefault("namespace", "raw")
        return IcebergWriter(IcebergWriter.Config.model_validate(config), context(work_dir or tmp_path, job))

    return make
