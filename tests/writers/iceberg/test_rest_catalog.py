"""The REST catalog: a real one (SeaweedFS's Iceberg REST catalog over an S3 table bucket), SigV4 or OAuth2.

Every test writes into a namespace of its own on the session's server, and reads back through a plain
pyiceberg client (and the data files through pyarrow), never through Dativo's catalog code.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.table import Table

from dativo.api import Dataset
from dativo.errors import ConnectionFailed
from dativo.writers.iceberg import IcebergWriter
from dativo.writers.iceberg.catalog import CatalogConfig
from tests.fixtures.s3 import TABLE_BUCKET, S3Server
from tests.writers.iceberg.conftest import MakeWriter
from tests.writers.iceberg.helpers import run, write

ORDERS = Dataset("public.orders", primary_key=("id",))
WRONG_SECRET = "wrong-secret-7d41c9"


def orders(*ids: int) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "note": pa.array([f"n{i}" for i in ids], pa.string())})


def state(cursor: int) -> dict[str, Any]:
    return {"cursor": {"column": "id", "value": str(cursor), "key_columns": ["id"], "key": [str(cursor)]}}


@pytest.fixture
def namespace() -> str:
    """A namespace no other test writes to (the table bucket is shared by the session)."""
    return f"rest_{uuid.uuid4().hex[:12]}"


def oauth_token(server: S3Server) -> str:
    """A bearer token from the catalog's own OAuth2 endpoint."""
    form = {"grant_type": "client_credentials", "client_id": server.access_key, "scope": "catalog"}
    body = urllib.parse.urlencode({**form, "client_secret": server.secret_key}).encode()
    with urllib.request.urlopen(f"{server.iceberg_uri}/v1/oauth/tokens", data=body, timeout=10) as response:
        return json.load(response)["access_token"]


def writer_on(
    make_writer: MakeWriter, server: S3Server, namespace: str, auth: str = "sigv4", **catalog: object
) -> IcebergWriter:
    """A writer on the server's REST catalog: ``sigv4``, OAuth2 ``credential``, or a bearer ``token``."""
    if auth == "token":
        token = oauth_token(server)
        block = server.rest_catalog("credential", credential=None, oauth2_server_uri=None, token=token)
    else:
        block = server.rest_catalog(auth)
    block.update(catalog)
    return make_writer(catalog=block, namespace=namespace)


def loaded(server: S3Server, namespace: str, table: str = "orders") -> Table:
    """The table as an independent pyiceberg client loads it."""
    return RestCatalog("reader", **server.iceberg_properties()).load_table((namespace, table))


def scanned(server: S3Server, namespace: str) -> pa.Table:
    return loaded(server, namespace).scan().to_arrow().sort_by("id")


@pytest.mark.parametrize("auth", ["sigv4", "credential", "token"])
def test_a_run_lands_in_the_rest_catalog_and_any_client_reads_exactly_its_rows(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str, auth: str
) -> None:
    writer = writer_on(make_writer, s3_server, namespace, auth)
    writer.check()
    info = run(writer, ORDERS, orders(1, 2, 3), "r1", state=state(3))

    table = loaded(s3_server, namespace)
    assert table.location().startswith(f"s3://{TABLE_BUCKET}/")
    assert scanned(s3_server, namespace).to_pydict() == {"id": [1, 2, 3], "note": ["n1", "n2", "n3"]}
    assert info.commit_id == str(table.current_snapshot().snapshot_id) and info.rows == 3
    data_files = [task.file.file_path for task in table.scan().plan_files()]
    fs = s3_server.filesystem()
    raw = pa.concat_tables(pq.read_table(path.removeprefix("s3://"), filesystem=fs) for path in data_files)
    assert sorted(raw.column("id").to_pylist()) == [1, 2, 3]


def test_an_incremental_rerun_commits_only_new_rows_and_its_state_round_trips(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str
) -> None:
    run(writer_on(make_writer, s3_server, namespace), ORDERS, orders(1, 2), "r1", state=state(2))
    rerun = writer_on(make_writer, s3_server, namespace)  # a fresh writer, as the next run has
    assert rerun.state(ORDERS) == state(2)

    run(rerun, ORDERS, orders(3, 4, 5), "r2", state=state(5))

    assert scanned(s3_server, namespace).column("id").to_pylist() == [1, 2, 3, 4, 5]
    snapshot = loaded(s3_server, namespace).current_snapshot()
    assert snapshot.summary["added-records"] == "3" and snapshot.summary["dativo.run-id"] == "r2"
    assert json.loads(snapshot.summary["dativo.state"]) == state(5)
    assert writer_on(make_writer, s3_server, namespace).state(ORDERS) == state(5)


def test_a_rerun_with_the_same_run_id_is_a_no_op(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str
) -> None:
    writer = writer_on(make_writer, s3_server, namespace)
    writer.prepare(ORDERS, orders(1).schema, "append")
    files = write(writer, ORDERS, orders(1, 2, 3))
    first = writer.commit(ORDERS, [files], state(3), "run-42")

    again = writer_on(make_writer, s3_server, namespace)
    again.prepare(ORDERS, orders(1).schema, "append")
    repeat = again.commit(ORDERS, [write(again, ORDERS, orders(1, 2, 3))], state(3), "run-42")

    assert not first.no_op and repeat.no_op and repeat.commit_id == first.commit_id
    assert scanned(s3_server, namespace).column("id").to_pylist() == [1, 2, 3]
    assert len(loaded(s3_server, namespace).snapshots()) == 1


def refusal(writer: IcebergWriter, secret: str) -> str:
    """check()'s message, asserted to be one clear paragraph without ``secret``."""
    with pytest.raises(ConnectionFailed) as caught:
        writer.check()
    text = str(caught.value)
    assert secret not in text and "\n" not in text
    assert "REST catalog 'dativo' at http://127.0.0.1:" in text and "job 't'" in text
    return text


def test_a_wrong_sigv4_secret_is_refused_clearly(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str
) -> None:
    wrong = s3_server.settings(secret_access_key=WRONG_SECRET)
    writer = writer_on(make_writer, s3_server, namespace, s3=wrong)

    text = refusal(writer, WRONG_SECRET)

    assert "SigV4-signed" in text and "refused the credentials" in text and "signature" in text


def test_a_wrong_oauth2_credential_is_refused_clearly(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str
) -> None:
    credential = f"{s3_server.access_key}:{WRONG_SECRET}"
    writer = writer_on(make_writer, s3_server, namespace, "credential", credential=credential)

    text = refusal(writer, WRONG_SECRET)

    assert "refused the credentials" in text and "invalid_client" in text


def test_a_refused_token_is_a_clear_error(
    make_writer: MakeWriter, s3_server: S3Server, namespace: str
) -> None:
    token = "not-a-token-3b9e0a"
    writer = writer_on(make_writer, s3_server, namespace, "token", token=token)

    text = refusal(writer, token)

    assert "refused the credentials" in text


def test_an_unreachable_rest_uri_is_a_clear_error(make_writer: MakeWriter, s3_server: S3Server) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    writer = writer_on(make_writer, s3_server, "raw", uri=f"http://127.0.0.1:{port}")

    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        writer.check()

    text = str(caught.value)
    assert time.monotonic() - started < 30
    assert f"REST catalog 'dativo' at http://127.0.0.1:{port}" in text
    assert "cannot reach the catalog: Connection refused" in text
    assert s3_server.secret_key not in text and "\n" not in text


def test_rest_settings_on_a_sql_catalog_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"sigv4, signing_name: only for a REST catalog"):
        CatalogConfig.model_validate({"type": "sql", "sigv4": True, "signing_name": "glue"})
