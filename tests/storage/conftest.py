"""Stores for the storage tests: every protocol test runs on a local folder and on a real S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.storage import LocalStore, S3Settings, S3Store, Store
from tests.fixtures.s3 import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty dataset folder: ``tmp_path/items`` or ``s3://<fresh bucket>/lake/items``."""
    if request.param == "local":
        return LocalStore(tmp_path / "items")
    server: S3Server = request.getfixturevalue("s3_server")
    return S3Store(f"s3://{server.create_bucket()}/lake/items", S3Settings.model_validate(server.settings()))
