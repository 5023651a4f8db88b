"""check() and storage: local and S3 (a real SeaweedFS server) warehouses, and clear refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from dativo.api import Dataset
from dativo.errors import ConnectionFailed, DativoError
from dativo.storage import S3Settings, redact, s3_filesystem
from dativo.writers.iceberg import IcebergWriter
from tests.fixtures.s3 import S3Server
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import read, run, table_of, write

ORDERS = Dataset("public.orders", primary_key=("id",))


def orders(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "note": pa.array([f"n{i}" for i in ids], pa.string())})


def s3_target(server: S3Server, bucket: str, tmp_path: Path, **s3: object) -> dict[str, object]:
    return {
        "catalog": {
            "type": "sql",
            "uri": f"sqlite:///{tmp_path / 'catalog' / 'catalog.db'}",
            "warehouse": f"s3://{bucket}/warehouse",
            "s3": server.settings(**s3),
        },
        "namespace": "raw",
    }


def test_default_embedded_catalog_lives_in_the_work_dir(make_writer: MakeWriter, tmp_path: Path) -> None:
    writer = make_writer()
    writer.check()
    run(writer, ORDERS, orders(1), "r1")

    assert (tmp_path / "catalog.db").is_file()
    assert table_of(writer, ORDERS).location() == (tmp_path / "warehouse" / "raw" / "orders").as_uri()


def test_explicit_sql_catalog_with_file_uri_warehouse(make_writer: MakeWriter, tmp_path: Path) -> None:
    catalog = {
        "type": "sql",
        "uri": f"sqlite:///{tmp_path}/cat/c.db",
        "warehouse": (tmp_path / "wh").as_uri(),
    }
    writer = make_writer(catalog=catalog, work_dir=tmp_path / "elsewhere")
    writer.check()
    run(writer, ORDERS, orders(1, 2), "r1")

    assert (tmp_path / "cat" / "c.db").is_file()
    assert list((tmp_path / "wh" / "raw" / "orders" / "data").glob("*.parquet"))
    assert not (tmp_path / "elsewhere" / "catalog.db").exists()


def test_unwritable_local_warehouse_is_a_connection_failure(make_writer: MakeWriter, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the warehouse should be")
    writer = make_writer(catalog={"type": "sql", "warehouse": str(blocker / "warehouse")})

    with pytest.raises(ConnectionFailed, match=r"not-a-dir/warehouse") as error:
        writer.check()

    assert "job 't'" in str(error.value) and "plugin 'iceberg'" in str(error.value)


def test_unwritable_catalog_path_is_a_connection_failure(make_writer: MakeWriter, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    writer = make_writer(catalog={"type": "sql", "uri": f"sqlite:///{blocker}/sub/catalog.db"})

    with pytest.raises(ConnectionFailed, match="SQL catalog 'dativo'"):
        writer.check()


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        IcebergWriter.Config.model_validate({"namespace": "raw", "mode": "append"})
    with pytest.raises(ValueError, match="extra"):
        IcebergWriter.Config.model_validate(
            {"catalog": {"type": "sql", "s3": {"endpoint": "http://x", "bogus": 1}}}
        )
    schema = IcebergWriter.Config.model_json_schema()
    assert all("description" in p for p in schema["properties"].values())


def test_s3_warehouse_with_sql_catalog(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    config = IcebergWriter.Config.model_validate(s3_target(s3_server, s3_bucket, tmp_path))
    writer = IcebergWriter(config, _ctx(tmp_path))
    writer.check()

    run(writer, ORDERS, orders(1, 2), "r1", state={"cursor": 2})
    writer.prepare(ORDERS, orders(1).schema, "merge")
    files = write(writer, ORDERS, orders(2, 3))
    writer.commit(ORDERS, [files], {"cursor": 3}, "r2")

    assert all(f.startswith(f"s3://{s3_bucket}/warehouse/raw/orders/data/") for f in files.files)
    assert read(writer, ORDERS).column("id").to_pylist() == [1, 2, 3]
    assert IcebergWriter(config, _ctx(tmp_path)).state(ORDERS) == {"cursor": 3}
    listing = s3_server.filesystem().get_file_info(
        pafs.FileSelector(f"{s3_bucket}/warehouse/raw/orders", recursive=True)
    )
    assert any(i.path.endswith(".metadata.json") for i in listing)

    leftover = write(writer, ORDERS, orders(9))
    writer.abort([leftover])
    assert (
        s3_server.filesystem().get_file_info(leftover.files[0].removeprefix("s3://")).type
        == pafs.FileType.NotFound
    )


def test_wrong_s3_credentials_are_refused_without_leaking_the_secret(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wr0ng-s3cret-value-42"
    config = IcebergWriter.Config.model_validate(
        s3_target(s3_server, s3_bucket, tmp_path, secret_access_key=secret)
    )
    writer = IcebergWriter(config, _ctx(tmp_path))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConnectionFailed) as error:
        writer.check()
    with pytest.raises(DativoError) as prepare_error:
        writer.prepare(ORDERS, orders(1).schema, "append")

    for exc in (error.value, prepare_error.value):
        message = str(exc)
        assert secret not in message and s3_server.access_key not in message
        assert s3_server.endpoint in message or "warehouse" in message
    assert "not writable" in str(error.value)
    assert secret not in caplog.text
    assert secret not in repr(config)


def test_s3_settings_and_filesystem(s3_server: S3Server, s3_bucket: str) -> None:
    settings = S3Settings.model_validate(s3_server.settings())
    assert settings.host == s3_server.host and settings.scheme == "http"
    assert "***" not in settings.describe() and s3_server.secret_key not in settings.describe()
    assert s3_server.secret_key not in repr(settings)

    fs = s3_filesystem(settings)
    with fs.open_output_stream(f"{s3_bucket}/probe.txt") as stream:
        stream.write(b"hello")
    assert fs.get_file_info(f"{s3_bucket}/probe.txt").size == 5

    assert redact(f"key={s3_server.secret_key}!", settings.secrets()) == "key=***!"
    with pytest.raises(ValueError, match="http://host:port"):
        S3Settings.model_validate({"endpoint": "ftp://x"})


def _ctx(tmp_path: Path):
    from tests.writers.iceberg.helpers import context

    return context(tmp_path)


def test_a_catalog_password_never_shows(make_writer: MakeWriter) -> None:
    uri = "postgresql+psycopg://dativo:hunter2-secret@127.0.0.1:1/catalog"  # nothing listens on port 1
    writer = make_writer(catalog={"type": "sql", "uri": uri})

    with pytest.raises(ConnectionFailed) as error:
        writer.check()

    assert "hunter2-secret" not in str(error.value)
    assert "postgresql+psycopg://dativo:***@127.0.0.1:1/catalog" in str(error.value)
