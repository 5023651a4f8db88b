"""End to end, as a user: install a packed, published plugin into a fresh virtualenv (from a folder index, or over
HTTP from a real server), verify it, run a job with it; ``dativo.lock`` pins it and ``plugins list`` shows it."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dativo.market.sign import PublicKey
from tests.market.conftest import MARKER_ENV, Market, go_job, orders_job

PLUGINS = {
    "python": ("dativo-orders-demo", "1.1.0", "orders_demo"),
    "go": ("dativo-go-parquet", "0.1.0", "go_parquet"),
}


def _index(market: Market, where: str) -> str:
    return str(market.index) if where == "folder" else market.url


@pytest.mark.parametrize("where", ["folder", "http"])
@pytest.mark.parametrize("language", ["python", "go"])
def test_pack_publish_install_verify_run(market: Market, project: Path, language: str, where: str) -> None:
    name, version, entry_point = PLUGINS[language]
    real = where == "folder"  # the venv's own `dativo` script, in a new process (else a quicker fork of one)
    installed = market.dativo("plugin", "install", name, "--index", _index(market, where),
                              "--trust", str(market.publisher.public), cwd=project, real=real)
    assert installed.returncode == 0, installed.stderr
    assert f"installed {name} {version} (signed by {market.publisher.key.fingerprint}, trusted)" in installed.stdout

    pin = tomllib.loads((project / "dativo.lock").read_text())["plugin"][0]
    packed = market.orders[version] if language == "python" else market.go
    wheel = packed.manifest.artefacts[0]
    assert (pin["name"], pin["version"], pin["entry_point"], pin["trusted"]) == (name, version, entry_point, True)
    assert (pin["artefact"], pin["artefact_sha256"]) == (wheel.file, wheel.sha256)
    assert pin["manifest_sha256"] == packed.manifest.digest()
    assert PublicKey.parse(pin["publisher"]).raw == market.publisher.key.raw
    assert pin["index"] == _index(market, where)

    verified = market.dativo("plugin", "verify", "--json", cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["plugins"] == [{"name": name, "version": version, "status": "ok"}]

    marker = project / "imported.txt"
    job = orders_job(project) if language == "python" else go_job(project)
    ran = market.dativo("run", str(job), "--json", cwd=project, env={MARKER_ENV: str(marker)}, real=real)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(ran.stdout)
    side = report["reader"] if language == "python" else report["writer"]
    assert (side["implementation"], side["origin"], side["version"]) == (entry_point, "entry point", version)
    if language == "python":
        assert pq.read_table(project / "out" / "orders").num_rows == 4
        assert marker.read_text().startswith("imported")  # it ran in-process: pinned, verified and trusted
    else:
        table = pq.read_table(next((project / "out" / "items").glob("0*"))).sort_by("id")
        assert table.column("name").to_pylist() == ["a", "b", "c"]

    if where == "http":
        return
    listed = market.dativo("plugins", "list", "--json", cwd=project)
    row = next(r for r in json.loads(listed.stdout) if r["name"] == entry_point)
    assert (row["pinned"], row["verified"], row["trust"], row["publisher"]) == (
        True, "yes", "trusted", market.publisher.key.fingerprint)
    assert row["source"] == f"index {_index(market, where)}"
    table = market.dativo("plugins", "list", cwd=project).stdout
    assert f"{entry_point}: index {market.index}" in table and "pinned, verified" in table


def test_install_picks_a_version_and_the_lock_follows(market: Market, project: Path) -> None:
    trust = ("--trust", str(market.publisher.public))
    first = market.dativo("plugin", "install", "dativo-orders-demo==1.0.0", "--index", market.url, *trust, cwd=project)
    assert first.returncode == 0, first.stderr
    upgrade = market.dativo("plugin", "install", "dativo-orders-demo", "--index", market.url, *trust, cwd=project)
    assert upgrade.returncode == 0, upgrade.stderr
    assert tomllib.loads((project / "dativo.lock").read_text())["plugin"][0]["version"] == "1.1.0"
    missing = market.dativo("plugin", "install", "dativo-orders-demo==3.0", "--index", market.url, cwd=project)
    assert missing.returncode == 3 and "no version 3.0" in missing.stderr and "1.0.0, 1.1.0" in missing.stderr


def test_a_trusted_keys_file_in_the_users_config(market: Market, project: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config)}
    trusted = market.dativo("plugin", "trust", str(market.publisher.public), cwd=project, env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert (config / "dativo" / "trusted_keys").read_text().startswith("ed25519 ")
    done = market.dativo("plugin", "install", "dativo-orders-demo==1.1.0", "--index", str(market.index),
                         "--lock", str(project / "locks" / "dativo.lock"), cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert (project / "locks" / "dativo.lock").is_file() and not (project / "dativo.lock").exists()
