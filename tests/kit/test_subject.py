"""The plugin under test: every form of IMPL, the broken configurations and the temporary targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.config import FlightEndpoint, NativeLibrary, PluginCommand
from dativo.kit import UsageError
from dativo.kit.subject import Session, Subject, broken, parse_implementation, resolve, temporary_target

SECRET = "dativoKitFakeXYZ123"


@pytest.mark.parametrize(
    ("given", "kind", "shown"),
    [
        ("csv", str, "csv"),
        ("tests.fixtures.broken_plugins:HonestReader", str, "tests.fixtures.broken_plugins:HonestReader"),
        ("{lib: ./libreader.so}", NativeLibrary, "./libreader.so"),
        ("build/libreader.so.1", NativeLibrary, "build/libreader.so.1"),
        ('{"command": ["./reader", "--fast"]}', PluginCommand, "./reader --fast"),
        ({"flight": "grpc://127.0.0.1:8815"}, FlightEndpoint, "grpc://127.0.0.1:8815"),
    ],
)
def test_every_form_of_implementation(given: object, kind: type, shown: str, tmp_path: Path) -> None:
    parsed = parse_implementation(given, base=tmp_path)
    assert isinstance(parsed, kind) and str(parsed) == shown
    if isinstance(parsed, NativeLibrary):
        assert parsed.path() == tmp_path / parsed.lib  # relative to the job's folder, as in a job


def test_a_bad_implementation_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="IMPL is invalid"):
        parse_implementation("{command: []}")
    with pytest.raises(UsageError, match="neither a name nor a JSON/YAML mapping"):
        parse_implementation("{lib: [")


def _spec(implementation: str, kind: str = "reader"):  # noqa: ANN202
    with Session() as session:
        return resolve(session.host, implementation, kind)[1]  # type: ignore[arg-type]


def test_a_broken_configuration_fakes_connections_credentials_and_paths(tmp_path: Path) -> None:
    spec = _spec("postgres")
    settings = {"connection": {"dsn": "postgresql://ann:pw@db.example:5432/shop"}, "tables": ["public.orders"]}
    made = broken(spec, settings, {}, SECRET, tmp_path)
    assert made.settings["connection"]["dsn"] == f"postgresql://kit:{SECRET}@127.0.0.1:9/kit"
    assert made.settings["tables"] == ["public.orders"] and made.planted == ["connection.dsn"]
    kv = broken(spec, {"connection": {"dsn": "host=/tmp dbname=shop"}}, {}, SECRET, tmp_path)
    assert f"password={SECRET}" in kv.settings["connection"]["dsn"] and "port=9" in kv.settings["connection"]["dsn"]
    leaky = broken(_spec("tests.fixtures.broken_plugins:LeakyReader"), {}, {"token": "letmein", "path": "a.csv"},
                   SECRET, tmp_path)
    assert leaky.options == {"token": SECRET, "path": str(tmp_path / "a.csv")}  # the declared secret field too
    assert broken(_spec("tests.fixtures.broken_plugins:HonestReader"), {}, {"rows": 3}, SECRET, tmp_path).changes == []


def test_a_writer_writes_only_into_the_temporary_target(tmp_path: Path) -> None:
    spec = _spec("parquet", "writer")
    subject = Subject("writer", "parquet", spec, settings={"path": "s3://prod/orders", "s3": {"region": "x"}},
                      connector="parquet")
    target = temporary_target(subject, spec, tmp_path)
    assert target.settings == {"path": str(tmp_path / "{dataset}")} and target.path == target.settings["path"]
    custom = _spec("tests.fixtures.plugins:MemoryWriter", "writer")
    named = Subject("writer", "x", custom, options={"where": "{tmp}/out", "rows": 2})
    assert temporary_target(named, custom, tmp_path).options == {"where": f"{tmp_path}/out", "rows": 2}
    with pytest.raises(UsageError, match="cannot tell where the writer"):
        temporary_target(Subject("writer", "x", custom), custom, tmp_path)
