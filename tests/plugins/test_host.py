"""``PluginHost`` (``dativo.plugins.host``): a run's plugins, each resolved once, all ended at close."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dativo.api import API_VERSION, Context, Split
from dativo.config import FlightEndpoint, PluginCommand, load_job
from dativo.engine import Engine
from dativo.errors import PluginFailed, PluginIncompatible
from dativo.plugins.host import PluginHost
from dativo.plugins.remote import RemoteOptions
from dativo.readers.files import CsvReader
from tests.plugins.fixtures_flight import ExecutableNumbers, plugin_children, raw, served

FIXTURES = "tests.plugins.fixtures_flight"


@pytest.fixture(autouse=True)
def _nothing_left_running() -> Iterator[None]:
    yield
    assert plugin_children() == []


def numbers(**settings: Any) -> PluginCommand:
    return PluginCommand(**served(f"{FIXTURES}:Numbers", **settings))  # type: ignore[arg-type]


def context(**settings: Any) -> Context:
    return Context(
        job="j", run_id="r", plugin="p", logger=logging.getLogger("dativo.reader.p"), settings=settings
    )


def pids() -> list[int]:
    return sorted(p.pid for p in plugin_children())  # type: ignore[attr-defined]


def test_resolves_each_plugin_once_and_hands_its_process_to_the_instance() -> None:
    with PluginHost(job="j") as host:
        spec = host.resolve("reader", numbers())
        started = pids()
        assert len(started) == 1  # started once, to learn the spec
        assert host.resolve("reader", numbers()) is spec  # the same setting: the same spec, nothing started
        assert host.resolved("reader", numbers()) is spec and pids() == started
        reader = host.instantiate(spec, spec.build_config({}, {"rows": 3}, section="source"), context())
        try:
            assert pids() == started  # the process that told the spec is the one that reads
            assert reader.read(Split("j")).read_all().num_rows == 3
        finally:
            reader.close()
        assert pids() == []  # closing the instance ended its process


def test_a_failure_is_remembered_for_the_run_but_not_beyond(tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    plugin = raw("silent", start_timeout_s=1)
    plugin["env"]["STARTS_FILE"] = str(starts)  # type: ignore[index]
    implementation = PluginCommand(**plugin)  # type: ignore[arg-type]
    with PluginHost() as host:
        with pytest.raises(PluginFailed) as first:
            host.resolve("reader", implementation)
        with pytest.raises(PluginFailed) as again:
            host.resolve("reader", implementation)
        assert again.value is first.value and host.resolved("reader", implementation) is None
    assert starts.read_text().splitlines() == ["silent"]
    with (
        PluginHost() as host,
        pytest.raises(PluginFailed),
    ):  # another run tries again: no failure outlives a host
        host.resolve("reader", implementation)
    assert starts.read_text().splitlines() == ["silent", "silent"]


def test_close_ends_every_process_it_started(tmp_path: Path) -> None:
    host = PluginHost()
    try:
        host.resolve(
            "reader", numbers()
        )  # a spec learnt: its connection waits for an instance that never comes
        spec = host.resolve("writer", PluginCommand(**served("parquet", "--role", "writer")))  # type: ignore[arg-type]
        settings = {"path": str(tmp_path)}
        host.instantiate(
            spec, spec.build_config(settings, {}, section="target"), context(**settings)
        )  # not closed
        assert len(pids()) == 2
    finally:
        host.close()
    assert pids() == []
    host.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        host.resolve("reader", "csv")


def test_classes_are_made_once_per_host_and_never_changed() -> None:
    before = dict(vars(ExecutableNumbers))
    with PluginHost() as first_host, PluginHost() as second_host:
        first = first_host.resolve("reader", f"{FIXTURES}:ExecutableNumbers")
        second = second_host.resolve("reader", f"{FIXTURES}:ExecutableNumbers")
    assert dict(vars(ExecutableNumbers)) == before  # the entry point's class is as its module made it
    assert (ExecutableNumbers.plugin_spec, ExecutableNumbers.language, ExecutableNumbers.Config) == (
        None,
        "unknown",
        RemoteOptions,
    )
    assert RemoteOptions.plugin_schema is None
    for spec in (first, second):
        assert issubclass(spec.cls, ExecutableNumbers) and spec.cls is not ExecutableNumbers
        assert (spec.cls.language, spec.cls.version, spec.version) == ("python", "2.0.1", "2.0.1")
        assert set(spec.cls.Config.model_json_schema()["properties"]) == {"rows", "batch_size"}
    assert first.cls is not second.cls  # each run learns its own; nothing is shared between runs


def test_nothing_leaks_from_one_run_into_the_next(workdir: Path) -> None:
    source = {
        "type": "csv",
        "path": "data/orders.csv",
        "reader": {
            "type": "custom",
            "implementation": f"{FIXTURES}:ExecutableNumbers",
            "options": {"rows": 4},
        },
    }
    job = {
        "version": 1,
        "name": "items",
        "source": source,
        "target": {"type": "parquet", "path": "out/items"},
    }
    path = workdir / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    for _ in range(2):
        report = Engine(load_job(path)).run()
        assert report.rows_written == 4 and report.reader is not None and report.reader.version == "2.0.1"
        assert pids() == []
    assert ExecutableNumbers.plugin_spec is None


def test_in_process_plugins_are_the_registry_s() -> None:
    with PluginHost() as host:
        spec = host.resolve("reader", "csv")
        assert spec.cls is CsvReader and host.resolve("reader", " csv ") is spec
        reader = host.instantiate(
            spec, spec.build_config({"path": "x.csv"}, {}, section="source"), context(path="x.csv")
        )
        assert isinstance(reader, CsvReader)


def test_a_plugin_process_declares_its_api_range_language_and_version() -> None:
    with PluginHost() as host:
        with pytest.raises(PluginIncompatible) as caught:
            host.resolve("reader", PluginCommand(**raw("api-7")))  # type: ignore[arg-type]
        assert f"supports Dativo API >=7,<8, but this Dativo provides API {API_VERSION}" in str(caught.value)
        assert plugin_children() == []  # the process that told it is gone


def test_a_running_plugin_that_is_not_there() -> None:
    with PluginHost() as host, pytest.raises(PluginFailed) as caught:
        host.resolve("reader", FlightEndpoint(flight="grpc://127.0.0.1:1"))
    assert "is the plugin at grpc://127.0.0.1:1 still running?" in str(caught.value)
    assert caught.value.plugin == "grpc://127.0.0.1:1"
