"""``dativo plugin keygen`` and ``dativo plugin pack``: a checked wheel (a platform wheel around a Go binary), an
SBOM, a manifest with every sha256, an ed25519 signature; the same bytes on every pack."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dativo.errors import ConfigError, PluginUntrusted
from dativo.market import pack, sign, wheels
from dativo.market.manifest import MANIFEST_FILE, load
from dativo.market.sign import Signature
from tests.conftest import Result
from tests.market.conftest import GO_PARQUET, Market, orders_project


def _digests(packed: pack.Packed) -> dict[str, str]:
    return {a.file: a.sha256 for a in packed.manifest.artefacts} | {"manifest": packed.manifest.digest()}


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path, cli: Callable[..., Result]) -> None:
    result = cli("plugin", "keygen", "--out", str(tmp_path), "--name", "Acme Data")
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "publisher.key", tmp_path / "publisher.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key = sign.read_keys(public)[0]
    assert key.comment == "Acme Data" and key.fingerprint in result.stdout
    sign.load_private(private)
    again = cli("plugin", "keygen", "--out", str(tmp_path))
    assert again.exit_code == 2 and "exists already" in again.output  # never replaced by accident


def test_packing_twice_gives_the_same_bytes(market: Market, tmp_path: Path) -> None:
    first = market.orders["1.0.0"]
    second = pack.pack(orders_project(tmp_path), out=tmp_path / "again", key=market.publisher.private)
    assert _digests(second) == _digests(first)
    assert second.wheel.read_bytes() == first.wheel.read_bytes()
    assert second.signature is not None and second.signature.value == first.signature.value  # ed25519: deterministic


def test_the_go_plugin_is_a_reproducible_platform_wheel_with_an_executable_binary(market: Market, tmp_path: Path) -> None:
    packed = market.go
    artefact = packed.manifest.wheel(pack.platform_name(pack.platform_tag()))
    assert artefact is not None and artefact.platform != "any"
    assert packed.wheel.name.endswith(f"-py3-none-{pack.platform_tag()}.whl")
    with zipfile.ZipFile(packed.wheel) as archive:
        info = archive.getinfo("dativo_go_parquet/bin/go_parquet_writer")
        assert (info.external_attr >> 16) & 0o111
        wheel_file = archive.read("dativo_go_parquet-0.1.0.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_file
        assert archive.namelist()[-1] == "dativo_go_parquet-0.1.0.dist-info/RECORD"
        inside = archive.read(f"dativo_go_parquet-0.1.0.dist-info/{MANIFEST_FILE}").decode()
    assert load(GO_PARQUET).model_copy(update={"artefacts": []}).to_toml() == inside
    again = pack.pack(GO_PARQUET, out=tmp_path, key=market.publisher.private)
    assert _digests(again) == _digests(packed)


def test_the_package_holds_manifest_signature_and_sbom(market: Market) -> None:
    packed = market.orders["1.0.0"]
    files = sorted(p.name for p in packed.folder.iterdir())
    assert files == sorted([packed.wheel.name, MANIFEST_FILE, MANIFEST_FILE + ".sig", "sbom.json"])
    published = load(packed.folder / MANIFEST_FILE)
    assert published == packed.manifest
    for artefact in published.artefacts:
        assert wheels.file_sha256(packed.folder / artefact.file) == artefact.sha256
    signature = Signature.from_json((packed.folder / (MANIFEST_FILE + ".sig")).read_text())
    assert sign.check(published, signature).raw == market.publisher.key.raw
    wheel = wheels.read(packed.wheel)  # its RECORD matches every entry
    assert f"{wheel.dist_info}/{MANIFEST_FILE}" in wheel.entries

    sbom = json.loads((packed.folder / "sbom.json").read_text())
    assert sbom["plugin"] == {"name": "dativo-orders-demo", "version": "1.0.0", "license": "Apache-2.0"}
    dativo = next(c for c in sbom["components"] if c["name"] == "dativo")
    assert dativo["version"] == "0.1.0" and dativo["license"] == "Apache-2.0"
    go = json.loads((market.go.folder / "sbom.json").read_text())["components"]
    arrow = next(c for c in go if c["name"] == "github.com/apache/arrow-go/v18")
    assert arrow["scope"] == "bundled" and arrow["version"].startswith("v18.")
    assert any(c["name"] == "stdlib" and c["version"].startswith("go1.") for c in go)


def test_a_manifest_changed_after_signing_no_longer_verifies(market: Market) -> None:
    packed = market.orders["1.0.0"]
    signature = Signature.from_json((packed.folder / (MANIFEST_FILE + ".sig")).read_text())
    widened = packed.manifest.model_copy(
        update={"capabilities": packed.manifest.capabilities.model_copy(update={"network": ["evil.example:443"]})}
    )
    with pytest.raises(PluginUntrusted, match="changed after it was signed"):
        sign.check(widened, signature)


def test_unsigned_packs_have_no_signature(market: Market) -> None:
    packed = market.orders["unsigned"]
    assert packed.signature is None and not (packed.folder / (MANIFEST_FILE + ".sig")).exists()


def test_the_certification_of_a_kit_report_is_recorded(market: Market, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"level": "certified", "kit": {"dativo": "0.1.0"},
                                  "plugin": {"implementation": "orders_demo", "origin": "entry point",
                                             "version": "1.0.0"}}))
    packed = pack.pack(orders_project(tmp_path), out=tmp_path / "out", key=market.publisher.private, report=report)
    assert packed.manifest.certification is not None
    assert packed.manifest.certification.level == "certified"
    assert packed.manifest.certification.report_sha256 == wheels.file_sha256(report)
    report.write_text(json.dumps({"level": None, "plugin": {"implementation": "orders_demo"}}))
    with pytest.raises(ConfigError, match="gives no certification level"):
        pack.pack(orders_project(tmp_path / "b"), out=tmp_path / "out", report=report, use_default_key=False)
    report.write_text(json.dumps({"level": "compatible", "plugin": {"implementation": "acme_orders"}}))
    with pytest.raises(ConfigError, match="certifies acme_orders"):
        pack.pack(orders_project(tmp_path / "c"), out=tmp_path / "out", report=report, use_default_key=False)


def test_a_version_kept_twice_must_agree(tmp_path: Path) -> None:
    project = orders_project(tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('dynamic = ["version"]', 'version = "9.9.9"'))
    with pytest.raises(ConfigError) as caught:
        pack.pack(project, use_default_key=False)
    assert "says version 9.9.9, dativo-plugin.toml says 1.0.0" in str(caught.value)
    assert "single source of truth" in str(caught.value)


def test_a_binary_that_was_not_built_is_named(tmp_path: Path) -> None:
    project = tmp_path / "go_parquet_writer"
    shutil.copytree(GO_PARQUET, project, ignore=shutil.ignore_patterns("go_parquet_writer", "__pycache__", "dist"))
    with pytest.raises(ConfigError, match="go_parquet_writer does not exist: build it before packing"):
        pack.pack(project, use_default_key=False)


def test_an_entry_point_the_wheel_lacks_is_refused(tmp_path: Path) -> None:
    project = orders_project(tmp_path)
    manifest = project / MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace('entry_point = "orders_demo"', 'entry_point = "orders"'))
    with pytest.raises(ConfigError, match="registers no entry point 'orders' in dativo.readers"):
        pack.pack(project, use_default_key=False)


def test_pack_command(market: Market, tmp_path: Path, cli: Callable[..., Result]) -> None:
    project = orders_project(tmp_path)
    result = cli("plugin", "pack", str(project), "--key", str(market.publisher.private), "--out", str(tmp_path / "o"),
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["signed_by"] == market.publisher.key.id
    assert data["manifest_sha256"] == market.orders["1.0.0"].manifest.digest()
