"""The trust policy: an installed plugin that is unsigned, signed by an untrusted key or not pinned runs only in
the sandbox with exactly the capabilities its manifest declares (by default), is refused under ``refuse``, runs
in-process under ``allow``; reaching beyond its capabilities fails and names the capability."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import read_parquet_dir
from tests.market.conftest import MARKER_ENV, Market, go_job, orders_job

MODULE = ("dativo_orders_demo",)


def _install(market: Market, project: Path, source: str) -> None:
    done = market.dativo("plugin", "install", "dativo-orders-demo==1.0.0", "--index", str(market.index.parent / source),
                         "--allow-untrusted", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "untrusted: it runs only in the sandbox" in done.stdout


def _run(market: Market, project: Path, job: Path) -> tuple[int, dict | None, str, list[str] | None, Path]:
    marker = project / "imported.txt"
    ran = market.dativo("run", str(job), "--json", cwd=project, env={MARKER_ENV: str(marker)}, modules=MODULE)
    report = json.loads(ran.stdout) if ran.stdout.strip() else None
    said = [ran.stderr, *(report or {}).get("warnings", []), (report or {}).get("error") or ""]
    return ran.returncode, report, " ".join(" ".join(said).split()), ran.loaded, marker


@pytest.mark.usefixtures("sandbox_works")
@pytest.mark.parametrize("source", ["unsigned", "stranger"])
def test_an_untrusted_plugin_runs_only_in_the_sandbox_by_default(market: Market, project: Path, source: str) -> None:
    _install(market, project, source)
    code, report, log, loaded, marker = _run(market, project, orders_job(project))
    assert code == 0, log
    assert report is not None and report["reader"]["origin"] == "sandbox"
    assert report["reader"]["implementation"] == "orders_demo"
    assert loaded == [] and not marker.exists()  # never imported into the host
    assert pq.read_table(project / "out" / "orders").num_rows == 4
    assert "it runs only in the sandbox, with the capabilities its manifest declares" in log


@pytest.mark.usefixtures("sandbox_works")
def test_a_plugin_not_pinned_by_the_project_is_sandboxed(market: Market, project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "other-project"
    elsewhere.mkdir()
    done = market.dativo("plugin", "install", "dativo-orders-demo==1.1.0", "--index", str(market.index),
                         "--trust", str(market.publisher.public), cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    code, report, log, loaded, _ = _run(market, project, orders_job(project))  # project has no dativo.lock
    assert code == 0, log
    assert report is not None and report["reader"]["origin"] == "sandbox" and loaded == []
    assert "is not pinned in dativo.lock" in log


@pytest.mark.parametrize("where", ["job", "dativo.toml", "dotted path"])
def test_refuse(market: Market, project: Path, where: str) -> None:
    _install(market, project, "unsigned")
    if where == "job":
        job = orders_job(project, extra="plugins: {policy: {unsigned: refuse}}\n")
    elif where == "dotted path":  # the installed package named by its class, not its entry point
        job = orders_job(project, extra="plugins: {policy: {unsigned: refuse}}\n",
                         implementation="dativo_orders_demo:OrdersDemoReader")
    else:
        (project / "dativo.toml").write_text('[plugins.policy]\nunsigned = "refuse"\n')
        job = orders_job(project)
    code, report, log, loaded, marker = _run(market, project, job)
    assert code == 3, log
    assert "dativo-orders-demo 1.0.0 is not signed, and plugins.policy.unsigned is refuse" in log
    assert "nothing of it was imported or started" in log
    assert loaded == [] and not marker.exists()
    assert not (project / "out").exists()


def test_allow_runs_it_in_process(market: Market, project: Path) -> None:
    _install(market, project, "unsigned")
    (project / "dativo.toml").write_text('[plugins.policy]\nunsigned = "refuse"\n')  # the job's key wins
    job = orders_job(project, extra="plugins: {policy: {unsigned: allow}}\n")
    code, report, log, loaded, marker = _run(market, project, job)
    assert code == 0, log
    assert report is not None and report["reader"]["origin"] == "entry point"
    assert loaded == list(MODULE) and marker.exists()


@pytest.mark.usefixtures("sandbox_works")
def test_reaching_beyond_the_declared_capabilities_fails_and_names_the_capability(
    market: Market, project: Path
) -> None:
    _install(market, project, "unsigned")
    secret = project / "secret.txt"
    secret.write_text("not for plugins")
    code, report, log, loaded, _ = _run(market, project, orders_job(project, peek=str(secret)))
    assert code == 3, log
    assert f"capability read_paths (data) does not include {secret}" in log
    assert "Declare what orders_demo needs in its dativo-plugin.toml [capabilities]" in log
    assert read_parquet_dir(project / "out" / "orders").num_rows == 0  # nothing published
    inside = project / "data" / "items.csv"  # the positive control: a declared path is readable
    code, report, log, _, _ = _run(market, project, orders_job(project, peek=str(inside)))
    assert code == 0, log
    assert report is not None and report["reader"]["origin"] == "sandbox"


@pytest.mark.usefixtures("sandbox_works")
def test_an_untrusted_go_plugin_runs_its_declared_command_in_the_sandbox(market: Market, project: Path) -> None:
    done = market.dativo("plugin", "install", "dativo-go-parquet", "--index", str(market.index), "--allow-untrusted",
                         cwd=project)  # signed, but by a key this user does not trust
    assert done.returncode == 0, done.stderr
    (project / "out").mkdir(mode=0o777)  # its declared write_paths; the sandbox runs it as an unprivileged uid
    (project / "out").chmod(0o777)
    ran = market.dativo("run", str(go_job(project)), "--json", cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    writer = json.loads(ran.stdout)["writer"]
    assert (writer["implementation"], writer["origin"], writer["language"]) == ("go_parquet", "sandbox", "go")
    table = pq.read_table(next((project / "out" / "items").glob("0*")))
    assert table.num_rows == 3


def test_plugins_list_never_imports_an_untrusted_plugin(market: Market, project: Path) -> None:
    _install(market, project, "unsigned")
    listed = market.dativo("plugins", "list", "--json", cwd=project, modules=MODULE)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "orders_demo")
    assert row["status"].startswith("unavailable: dativo-orders-demo 1.0.0 is not signed: not imported here")
    assert (row["pinned"], row["verified"], row["trust"], row["publisher"]) == (True, "yes", "untrusted", "")
    assert listed.loaded == []
