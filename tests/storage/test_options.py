"""StoreOptions and open_store: from a writer's path and s3 options to the store of one dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dativo.storage import MAX_S3_FILE_MB, LocalStore, S3Store, StoreOptions, open_store


def test_the_path_decides_the_storage_and_what_may_come_with_it() -> None:
    for path in ("out/{dataset}", "file:///srv/lake", "s3://bucket", "s3://bucket/lake/{dataset}"):
        assert StoreOptions(path=path).target_file_size_mb == 256
    largest = MAX_S3_FILE_MB
    on_s3 = StoreOptions(path="s3://b/x", s3={"endpoint": "http://127.0.0.1:1"}, target_file_size_mb=largest)
    assert on_s3.s3 is not None and on_s3.s3.endpoint == "http://127.0.0.1:1"
    refused = {
        "http://host/x": "expected a local folder, a file:// URL or an s3:// URL",
        "s3://": "names no bucket",
    }
    for path, message in refused.items():
        with pytest.raises(ValidationError, match=message):
            StoreOptions(path=path)
    with pytest.raises(ValidationError, match=f"at most {MAX_S3_FILE_MB} on S3"):
        StoreOptions(path="s3://b/x", target_file_size_mb=MAX_S3_FILE_MB + 1)
    with pytest.raises(ValidationError, match="s3 settings need an s3:// path"):
        StoreOptions(path="/srv/lake", s3={})
    with pytest.raises(ValidationError, match="colour"):
        StoreOptions.model_validate({"path": "out", "colour": "red"})


def test_open_store_picks_the_storage_from_the_path(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    s3 = open_store("s3://bucket/lake/items/", {"endpoint": "http://127.0.0.1:1", "path_style": True})
    assert isinstance(s3, S3Store)
    assert (s3.root, s3.location) == ("bucket/lake/items", "s3://bucket/lake/items")
    with pytest.raises(ValueError, match="replace {dataset}"):
        open_store("out/{dataset}")
    with pytest.raises(ValueError, match="s3 settings need an s3:// path"):
        open_store("out", {"endpoint": "http://127.0.0.1:1"})


def test_each_dataset_has_its_own_folder(tmp_path: Path) -> None:
    options = StoreOptions(path=f"{tmp_path}/lake/{{dataset}}")
    assert options.store("orders").root == str(tmp_path / "lake" / "orders")
    assert options.store("public.customers").root == str(tmp_path / "lake" / "public.customers")
