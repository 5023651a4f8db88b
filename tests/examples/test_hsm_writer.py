"""The ``hsm_encrypted`` example writer: PostgreSQL → S3 (SeaweedFS), encrypted with keys wrapped by SoftHSM2.

What these tests prove, against a real PostgreSQL, a real S3 server and a real PKCS#11 token:
- no plaintext value of a marker column appears in any byte the job puts into the bucket (data files,
  commit log, state), and the files are not compressed, so only the encryption can be hiding it;
- the HSM gives back exactly the source rows (Python function and ``dativo-hsm decrypt``);
- without the HSM, plain pyarrow cannot read the files; with another key under the same label, neither;
- a wrong PIN, a missing token, key or library each stop the job with a clear error and publish nothing;
- ``fallback: default`` can never hand the data to a plaintext built-in writer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml
from dativo_hsm import DecryptionFailed, committed_files, read_encrypted  # uv pip install -e examples/plugins/hsm_writer

from tests.conftest import Result
from tests.fixtures.postgres import PgSchema
from tests.fixtures.s3 import S3Server
from tests.fixtures.softhsm import SoftHsm


EXAMPLE_JOB = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "postgres_to_hsm_s3.yaml"
ROWS = 40


@pytest.fixture
def patients(pg_schema: PgSchema) -> tuple[PgSchema, str]:
    """A ``patients`` table whose ``diagnosis`` values are unique markers; returns (schema, marker prefix)."""
    marker = f"MARKER{uuid.uuid4().hex[:10].upper()}"
    pg_schema.execute(
        "CREATE TABLE patients (id bigint PRIMARY KEY, name text NOT NULL, diagnosis text, "
        "charge numeric(12,2), updated_at timestamptz NOT NULL)"
    )
    pg_schema.execute(
        "INSERT INTO patients SELECT i, 'patient ' || i, %s || '-' || i, i * 1.25, "
        "timestamptz '2024-01-01 00:00Z' + i * interval '1 hour' FROM generate_series(1, %s) i",
        (marker, ROWS),
    )
    return pg_schema, marker


def source_rows(schema: PgSchema) -> list[tuple[Any, ...]]:
    """The table as PostgreSQL has it, by id."""
    return schema.execute("SELECT id, name, diagnosis, charge, updated_at FROM patients ORDER BY id")


def writer_options(hsm: SoftHsm, path: str, **extra: Any) -> dict[str, Any]:
    """``target.writer.options`` for the session's token, PIN from ``${HSM_PIN}``, S3 from ``${S3_*}``."""
    options: dict[str, Any] = {
        "path": path,
        "pkcs11_library": hsm.library,
        "token_label": hsm.token,
        "key_label": hsm.key_label,
        "pin": "${HSM_PIN}",
        "compression": "none",  # so that only the encryption can hide the markers from the byte scan
    }
    if path.startswith("s3://"):
        options["s3"] = {"endpoint": "${S3_ENDPOINT}", "access_key_id": "${S3_KEY}",
                         "secret_access_key": "${S3_SECRET}", "region": "us-east-1", "path_style": True}
    options.update(extra)
    return options


def job(schema: PgSchema, options: dict[str, Any], *, fallback: str = "fail", **target: Any) -> dict[str, Any]:
    """A PostgreSQL → hsm_encrypted job (incremental on ``updated_at``)."""
    return {
        "version": 1,
        "name": "patients_to_vault",
        "source": {"type": "postgres", "connection": {"dsn": "${PG_DSN}"}, "tables": [schema.table("patients")],
                   "parallelism": 2, "incremental": {"cursor": "updated_at"}},
        "target": {"type": "hsm_encrypted", "mode": "append",
                   "writer": {"type": "custom", "implementation": "hsm_encrypted", "fallback": fallback,
                              "options": options}, **target},
    }


@pytest.fixture
def run(workdir: Path, cli: Callable[..., Result], pg_dsn: str, s3_server: S3Server,
        softhsm: SoftHsm) -> Callable[..., tuple[Result, dict[str, Any]]]:
    """``run(job, *args, pin=...)``: write the job and ``dativo run --json`` it; returns (result, report)."""

    def invoke(spec: dict[str, Any], *args: str, pin: str | None = None) -> tuple[Result, dict[str, Any]]:
        path = workdir / f"job-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        env = {"PG_DSN": pg_dsn, "HSM_PIN": softhsm.pin if pin is None else pin,
               "S3_ENDPOINT": s3_server.endpoint, "S3_KEY": s3_server.access_key, "S3_SECRET": s3_server.secret_key}
        result = cli("run", str(path), "--json", *args, env=env)
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON report (exit {result.exit_code}):\n{result.output}")
        return result, report

    return invoke


def bucket_objects(server: S3Server, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, with its bytes."""
    fs = server.filesystem()
    infos = fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
    objects = {}
    for info in infos:
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as stream:
                objects[info.path] = stream.read()
    return objects


def s3_options(server: S3Server) -> dict[str, Any]:
    return {"endpoint": server.endpoint, "access_key_id": server.access_key,
            "secret_access_key": server.secret_key, "path_style": True}


def test_postgres_to_s3_is_encrypted_end_to_end(
    patients: tuple[PgSchema, str], run: Callable[..., tuple[Result, dict[str, Any]]], s3_server: S3Server,
    s3_bucket: str, softhsm: SoftHsm, tmp_path: Path,
) -> None:
    schema, marker = patients
    path = f"s3://{s3_bucket}/vault/patients"
    result, report = run(job(schema, writer_options(softhsm, path)))
    assert result.exit_code == 0, result.output
    assert report["writer"]["implementation"] == "hsm_encrypted"
    assert report["rows_written"] == ROWS and report["fallback_used"] is False
    assert softhsm.pin not in result.output

    # A second, incremental run: the state sealed in the first commit is unsealed by the HSM.
    schema.execute("INSERT INTO patients VALUES (%s, 'late', %s, 1.00, timestamptz '2030-01-01 00:00Z')",
                   (ROWS + 1, f"{marker}-{ROWS + 1}"))
    again, report = run(job(schema, writer_options(softhsm, path)))
    assert again.exit_code == 0, again.output
    assert report["rows_written"] == 1

    objects = bucket_objects(s3_server, s3_bucket)
    files = [key for key in objects if key.endswith(".parquet")]
    assert len(files) >= 2 and all("/_staging/" not in key for key in files)  # 2 splits, then 1
    assert not [key for key in objects if "/_dativo/staging/" in key]  # every committed run rolled forward
    assert any("/_dativo/log/" in key for key in objects)
    leaks = [key for key, data in objects.items() if marker.encode() in data or b"patient 1" in data]
    assert leaks == [], f"plaintext in {leaks}"
    # The scan would see plaintext: the same rows written without encryption do contain the markers.
    plain = tmp_path / "plain.parquet"
    table = read_encrypted(path, pkcs11_library=softhsm.library, token_label=softhsm.token, pin=softhsm.pin,
                           s3=s3_options(s3_server))
    pq.write_table(table, plain, compression="none")
    assert marker.encode() in plain.read_bytes()

    # With the HSM: exactly the source rows.
    got = table.sort_by("id")
    assert [tuple(row.values()) for row in got.to_pylist()] == source_rows(schema)

    # Without the HSM: plain pyarrow cannot open any file; another key under the same label cannot either.
    fs = s3_server.filesystem()
    for file in committed_files(path, s3=s3_options(s3_server)):
        with pytest.raises(OSError, match="(?i)encrypt|decrypt"):
            with fs.open_input_file(file) as handle:
                pq.read_table(handle)
    with pytest.raises(DecryptionFailed, match="cannot decrypt"):
        read_encrypted(path, pkcs11_library=softhsm.library, token_label=softhsm.other_token, pin=softhsm.pin,
                       s3=s3_options(s3_server))

    # The console script gives the same rows back (PIN from the environment, never the command line).
    out = tmp_path / "decrypted.parquet"
    decrypt = subprocess.run(
        [sys.executable, "-m", "dativo_hsm", "decrypt", path, "--token-label", softhsm.token,
         "--pkcs11-library", softhsm.library, "--s3-endpoint", s3_server.endpoint, "--s3-path-style",
         "-o", str(out)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "SOFTHSM2_CONF": str(softhsm.conf), "HSM_PIN": softhsm.pin,
             "AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key},
    )
    assert decrypt.returncode == 0, decrypt.stderr
    assert pq.read_table(out).sort_by("id").equals(got)


def test_selected_columns_with_plaintext_footer(
    patients: tuple[PgSchema, str], run: Callable[..., tuple[Result, dict[str, Any]]], s3_server: S3Server,
    s3_bucket: str, softhsm: SoftHsm,
) -> None:
    schema, marker = patients
    path = f"s3://{s3_bucket}/patients"
    options = writer_options(softhsm, path, columns=["name", "diagnosis"], plaintext_footer=True)
    result, _ = run(job(schema, options))
    assert result.exit_code == 0, result.output
    objects = bucket_objects(s3_server, s3_bucket)
    assert not [key for key, data in objects.items() if marker.encode() in data]
    fs = s3_server.filesystem()
    ids = []
    for file in committed_files(path, s3=s3_options(s3_server)):
        with fs.open_input_file(file) as handle:
            footer = pq.ParquetFile(handle)  # the plaintext footer: schema, row counts, plain columns are public
            assert footer.schema_arrow.names == ["id", "name", "diagnosis", "charge", "updated_at"]
            ids += footer.read(columns=["id"]).column("id").to_pylist()
            with pytest.raises(OSError, match="(?i)decrypt"):
                footer.read(columns=["diagnosis"])
    assert sorted(ids) == list(range(1, ROWS + 1))
    table = read_encrypted(path, pkcs11_library=softhsm.library, token_label=softhsm.token, pin=softhsm.pin,
                           s3=s3_options(s3_server))
    assert sorted(table.column("diagnosis").to_pylist()) == sorted(f"{marker}-{i}" for i in range(1, ROWS + 1))


BAD_INPUT = {
    "wrong PIN": ({}, "not-the-pin", 1, "PIN was refused"),
    "missing token": ({"token_label": "no-such-token"}, None, 2, "no token labelled 'no-such-token'"),
    "missing key": ({"key_label": "no-such-key"}, None, 2, "no secret key labelled 'no-such-key'"),
    "library not found": ({"pkcs11_library": "/nonexistent/libpkcs11.so"}, None, 2, "library /nonexistent"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
@pytest.mark.parametrize("fallback", ["fail", "default"])
def test_bad_hsm_input_is_a_clear_error_and_publishes_nothing(
    case: str, fallback: str, patients: tuple[PgSchema, str],
    run: Callable[..., tuple[Result, dict[str, Any]]], s3_server: S3Server, s3_bucket: str, softhsm: SoftHsm,
) -> None:
    overrides, pin, exit_code, message = BAD_INPUT[case]
    schema, _ = patients
    options = writer_options(softhsm, f"s3://{s3_bucket}/patients", **overrides)
    result, report = run(job(schema, options, fallback=fallback), pin=pin)
    assert result.exit_code == exit_code, result.output
    assert message in result.output and "hsm_encrypted" in result.output
    assert report["status"] != "succeeded" and report["fallback_used"] is False
    assert bucket_objects(s3_server, s3_bucket) == {}  # nothing written, let alone published
    if pin is not None:
        assert pin not in result.output


def test_fallback_cannot_reach_a_plaintext_writer(
    patients: tuple[PgSchema, str], run: Callable[..., tuple[Result, dict[str, Any]]], s3_server: S3Server,
    s3_bucket: str, softhsm: SoftHsm,
) -> None:
    """Named under a built-in target type, with that type's keys beside it: refused before any data moves."""
    schema, _ = patients
    spec = job(schema, writer_options(softhsm, f"s3://{s3_bucket}/patients"), fallback="default",
               path=f"s3://{s3_bucket}/plain", s3={"endpoint": "${S3_ENDPOINT}", "access_key_id": "${S3_KEY}",
                                                   "secret_access_key": "${S3_SECRET}", "path_style": True})
    spec["target"]["type"] = "parquet"
    result, report = run(spec, pin="not-the-pin")  # the HSM would refuse: a fallback would be tempting
    assert result.exit_code == 2, result.output
    assert "target.type: hsm_encrypted" in result.output
    assert report["fallback_used"] is False
    assert bucket_objects(s3_server, s3_bucket) == {}


def test_fallback_under_a_builtin_type_without_keys_is_refused(
    patients: tuple[PgSchema, str], run: Callable[..., tuple[Result, dict[str, Any]]], s3_bucket: str,
    softhsm: SoftHsm, workdir: Path,
) -> None:
    schema, _ = patients
    spec = job(schema, writer_options(softhsm, f"s3://{s3_bucket}/patients"), fallback="default")
    spec["target"]["type"] = "iceberg"
    result, report = run(spec, pin="not-the-pin")
    assert not list(workdir.rglob("*.parquet")), "plaintext written by the built-in fallback"
    assert result.exit_code != 0 and report["fallback_used"] is False


def test_local_target_rerun_is_a_no_op_and_overwrite_replaces(
    patients: tuple[PgSchema, str], run: Callable[..., tuple[Result, dict[str, Any]]], softhsm: SoftHsm,
    workdir: Path,
) -> None:
    schema, marker = patients
    path = str(workdir / "vault")
    spec = job(schema, writer_options(softhsm, path))
    first, report = run(spec, "--run-id", "run-one")
    assert first.exit_code == 0, first.output
    again, report = run(spec, "--run-id", "run-one")
    assert again.exit_code == 0, again.output
    assert report["datasets"][0]["no_op"] is True and report["rows_written"] == 0
    assert not any((workdir / "vault" / "_staging").rglob("*.parquet"))  # the rerun's files were aborted
    assert not any((workdir / "vault" / "_dativo" / "staging").rglob("*.parquet"))  # (the shared layout)

    spec["target"]["mode"] = "overwrite"
    spec["source"].pop("incremental")
    replaced, _ = run(spec)
    assert replaced.exit_code == 0, replaced.output
    folders = sorted(p.name for p in (workdir / "vault").iterdir() if not p.name.startswith("_"))
    assert len(folders) == 1 and folders[0].startswith("000002-")
    table = read_encrypted(path, pkcs11_library=softhsm.library, token_label=softhsm.token, pin=softhsm.pin)
    assert table.num_rows == ROWS
    for file in (workdir / "vault").rglob("*.parquet"):
        assert marker.encode() not in file.read_bytes()


def test_example_job_names_the_hsm_writer() -> None:
    """The documented job file is valid YAML and uses exactly this writer, with no fallback."""
    spec = yaml.safe_load(EXAMPLE_JOB.read_text(encoding="utf-8"))
    writer = spec["target"]["writer"]
    assert spec["target"]["type"] == "hsm_encrypted"
    assert writer["implementation"] == "hsm_encrypted" and writer["fallback"] == "fail"
    assert writer["options"]["pin"].startswith("${")
