"""The index: ``dativo plugin publish`` into a folder, ``dativo plugins search`` from it or over HTTP; what does not
match its manifest or signature is never published, and a published version never changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dativo.errors import ConfigError, PluginUntrusted
from dativo.market import index
from dativo.market.manifest import MANIFEST_FILE
from tests.market.conftest import Market


def test_publish_writes_the_static_layout(market: Market) -> None:
    document = json.loads((market.index / "index.json").read_text())
    entry = document["plugins"]["dativo-orders-demo"]["1.0.0"]
    assert entry["publisher"] == market.publisher.key.id
    for described in index.files_of(index.Entry.model_validate(entry)):
        assert (market.index / described.file).is_file()
    assert entry["manifest"]["file"] == "dativo-orders-demo/1.0.0/dativo-plugin.toml"
    assert set(document["plugins"]) == {"dativo-orders-demo", "dativo-go-parquet"}


@pytest.mark.parametrize("where", ["folder", "http"])
def test_search(market: Market, project: Path, where: str) -> None:
    location = str(market.index) if where == "folder" else market.url
    result = market.dativo("plugins", "search", "parquet", "--index", location, "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert [(e["name"], e["version"], e["replaces"]) for e in found] == [("dativo-go-parquet", "0.1.0", "parquet")]
    every = market.dativo("plugins", "search", "--index", location, cwd=project)
    assert "dativo-orders-demo" in every.stdout and "1.1.0" in every.stdout  # the newest version
    assert market.publisher.key.fingerprint in every.stdout


def test_publishing_the_same_version_again(market: Market, tmp_path: Path) -> None:
    target = tmp_path / "index"
    first, new = index.publish(market.orders["1.0.0"].folder, target)
    again, new_again = index.publish(market.orders["1.0.0"].folder, target)
    assert new and not new_again and again == first
    with pytest.raises(ConfigError, match="published .* already, with other content or another signature"):
        index.publish(market.orders["stranger"].folder, target)  # same version, another signature


def _copy(folder: Path, into: Path) -> Path:
    target = into / folder.name
    shutil.copytree(folder, target)
    return target


def test_a_changed_artefact_is_never_published(market: Market, tmp_path: Path) -> None:
    package = _copy(market.orders["1.0.0"].folder, tmp_path)
    wheel = next(package.glob("*.whl"))
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01
    wheel.write_bytes(bytes(data))
    with pytest.raises(PluginUntrusted, match="does not match the manifest"):
        index.publish(package, tmp_path / "index")
    assert not (tmp_path / "index" / "index.json").exists()
    assert not (tmp_path / "index" / "dativo-orders-demo").exists()


def test_a_manifest_edited_after_signing_is_never_published(market: Market, tmp_path: Path) -> None:
    target = tmp_path / "index"
    index.publish(market.go.folder, target)
    before = (target / "index.json").read_bytes()
    package = _copy(market.orders["1.0.0"].folder, tmp_path)
    manifest = package / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace('read_paths = ["data"]', 'read_paths = ["/"]'))
    with pytest.raises(PluginUntrusted, match="the manifest was changed after it was signed"):
        index.publish(package, target)
    assert (target / "index.json").read_bytes() == before
    assert not (target / "dativo-orders-demo").exists()


def test_publish_command(market: Market, tmp_path: Path) -> None:
    result = market.dativo("plugin", "publish", str(market.orders["1.1.0"].folder), "--index", str(tmp_path / "i"),
                           cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "published: dativo-orders-demo 1.1.0" in result.stdout
    assert index.Index(tmp_path / "i").find("dativo-orders-demo").version == "1.1.0"
