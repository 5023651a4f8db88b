"""What is not what was signed and pinned is refused with a clear message, before anything of it is imported or
started: a changed installed file or binary, a manifest edited after signing, an untrusted or missing
signature, a downgrade, an index entry whose digest does not match its archive."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

from dativo.market import wheels
from dativo.market.manifest import MANIFEST_FILE
from tests.market.conftest import MARKER_ENV, Market, go_job, orders_job

MODULE = ("dativo_orders_demo",)


def _install(market: Market, project: Path, requirement: str, *flags: str, index: str | None = None) -> None:
    done = market.dativo("plugin", "install", requirement, "--index", index or str(market.index),
                         "--trust", str(market.publisher.public), *flags, cwd=project)
    assert done.returncode == 0, done.stderr


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` anew: installed files may be hard links into uv's cache, which must stay intact."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_bytes(data)
    path.chmod(mode)


def _state(market: Market) -> set[tuple[str, int]]:
    """What is installed, to the file: each distribution and the time its RECORD was written."""
    return {(p.name, (p / "RECORD").stat().st_mtime_ns) for p in market.site.glob("*.dist-info")}


def _pinned(project: Path) -> dict[str, str]:
    return tomllib.loads((project / "dativo.lock").read_text())["plugin"][0]


def test_a_changed_byte_in_an_installed_file_is_refused_before_import(market: Market, project: Path) -> None:
    _install(market, project, "dativo-orders-demo==1.1.0")
    installed = market.site / "dativo_orders_demo" / "__init__.py"
    original = installed.read_bytes()
    _replace(installed, original.replace(b"rows: int = 3", b"rows: int = 4"))
    marker = project / "imported.txt"
    ran = market.dativo("run", str(orders_job(project)), cwd=project, env={MARKER_ENV: str(marker)}, modules=MODULE)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert ran.loaded == []  # not in sys.modules
    message = " ".join(ran.stderr.split())
    assert "dativo-orders-demo 1.1.0 does not match" in message and "dativo.lock" in message
    assert f"the lock pins {_pinned(project)['files_sha256']}" in message
    assert "dativo_orders_demo/__init__.py was changed" in message
    assert "nothing of it was imported or started" in message
    assert "Reinstall the pinned build" in message and "dativo plugin install dativo-orders-demo==1.1.0" in message
    assert not marker.exists()  # never imported
    assert not (project / "out").exists()
    verified = market.dativo("plugin", "verify", cwd=project)
    assert verified.returncode == 3 and "was changed" in verified.stdout

    _install(market, project, "dativo-orders-demo==1.1.0")  # the fix the message gives
    again = market.dativo("run", str(orders_job(project)), cwd=project, env={MARKER_ENV: str(marker)}, modules=MODULE)
    assert again.returncode == 0, again.stderr
    assert marker.exists() and again.loaded == list(MODULE)  # the positive control: the verified plugin is imported


def test_a_changed_go_binary_is_never_started(market: Market, project: Path) -> None:
    _install(market, project, "dativo-go-parquet")
    binary = market.site / "dativo_go_parquet" / "bin" / "go_parquet_writer"
    started = project / "started.txt"
    _replace(binary, f"#!/bin/sh\necho started > {started}\n".encode())
    ran = market.dativo("run", str(go_job(project)), cwd=project)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    message = " ".join(ran.stderr.split())
    assert "dativo-go-parquet 0.1.0 does not match" in message
    assert "dativo_go_parquet/bin/go_parquet_writer was changed" in message
    assert not started.exists()
    _install(market, project, "dativo-go-parquet")
    assert market.dativo("plugin", "verify", cwd=project).returncode == 0


def _index_copy(market: Market) -> tuple[Path, str]:
    """A copy of the main index, served by the test server too."""
    name = f"copy-{uuid.uuid4().hex[:8]}"
    target = market.index.parent / name
    shutil.copytree(market.index, target)
    return target, market.url.replace("/main/", f"/{name}/")


def _set_digest(index: Path, relative: str) -> None:
    """Make index.json agree with a file an attacker replaced (they control the index)."""
    document = json.loads((index / "index.json").read_text())
    path = index / relative
    for versions in document["plugins"].values():
        for entry in versions.values():
            for described in [entry["manifest"], entry.get("signature") or {}, *entry["artefacts"]]:
                if described.get("file") == relative:
                    described["sha256"], described["size"] = wheels.file_sha256(path), path.stat().st_size
    (index / "index.json").write_text(json.dumps(document))


def test_a_manifest_edited_after_signing_is_refused_at_install(market: Market, project: Path) -> None:
    index, url = _index_copy(market)
    relative = f"dativo-orders-demo/1.1.0/{MANIFEST_FILE}"
    manifest = index / relative
    manifest.write_text(manifest.read_text().replace('read_paths = ["data"]', 'read_paths = ["/"]'))
    _set_digest(index, relative)
    before = _state(market)
    done = market.dativo("plugin", "install", "dativo-orders-demo==1.1.0", "--index", url,
                         "--trust", str(market.publisher.public), cwd=project)
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert "the manifest was changed after it was signed" in message and "Do not use this package" in message
    assert _state(market) == before and not (project / "dativo.lock").exists()


def test_a_signature_from_an_untrusted_key_is_refused(market: Market, project: Path) -> None:
    before = _state(market)
    done = market.dativo("plugin", "install", "dativo-orders-demo", "--index", str(market.index.parent / "stranger"),
                         "--trust", str(market.publisher.public), cwd=project)
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert f"is signed by key {market.stranger.key.fingerprint}" in message and "which you do not trust" in message
    assert "nothing was installed" in message and "--allow-untrusted" in message
    unsigned = market.dativo("plugin", "install", "dativo-orders-demo", "--index", str(market.index.parent / "unsigned"),
                             cwd=project)
    assert unsigned.returncode == 3 and "1.0.0 is not signed" in " ".join(unsigned.stderr.split())
    assert _state(market) == before and not (project / "dativo.lock").exists()


def test_a_downgrade_to_a_version_not_in_the_lock_is_refused(market: Market, project: Path) -> None:
    _install(market, project, "dativo-orders-demo==1.1.0")
    refused = market.dativo("plugin", "install", "dativo-orders-demo==1.0.0", "--index", str(market.index),
                            "--trust", str(market.publisher.public), cwd=project)
    assert refused.returncode == 3
    assert "pins dativo-orders-demo 1.1.0; installing 1.0.0 would be a downgrade" in " ".join(refused.stderr.split())

    older = market.orders["1.0.0"].wheel  # installed behind Dativo's back
    subprocess.run([str(market.root / "tools" / "uv"), "pip", "install", "--quiet", "--python", str(market.python),
                    "--reinstall-package", "dativo-orders-demo", str(older)], check=True)
    marker = project / "imported.txt"
    ran = market.dativo("run", str(orders_job(project)), cwd=project, env={MARKER_ENV: str(marker)}, modules=MODULE)
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert ran.loaded == []
    message = " ".join(ran.stderr.split())
    assert "dativo-orders-demo 1.0.0 is installed, but" in message and "pins 1.1.0 (a downgrade)" in message
    assert not marker.exists()

    allowed = market.dativo("plugin", "install", "dativo-orders-demo==1.0.0", "--index", str(market.index),
                            "--trust", str(market.publisher.public), "--allow-downgrade", cwd=project)
    assert allowed.returncode == 0, allowed.stderr
    assert _pinned(project)["version"] == "1.0.0"


def test_an_index_entry_whose_digest_does_not_match_its_archive(market: Market, project: Path) -> None:
    index, url = _index_copy(market)
    relative = "dativo-orders-demo/1.1.0/dativo_orders_demo-1.1.0-py3-none-any.whl"
    (index / relative).write_bytes(market.orders["1.0.0"].wheel.read_bytes())  # a real wheel, the wrong one
    before = _state(market)
    done = market.dativo("plugin", "install", "dativo-orders-demo==1.1.0", "--index", url,
                         "--trust", str(market.publisher.public), cwd=project)
    assert done.returncode == 3, done.stderr
    message = " ".join(done.stderr.split())
    assert f"{relative} does not match its entry in index.json" in message and "nothing was installed" in message

    _set_digest(index, relative)  # the index agrees with the swapped archive: the signed manifest does not
    again = market.dativo("plugin", "install", "dativo-orders-demo==1.1.0", "--index", url,
                          "--trust", str(market.publisher.public), cwd=project)
    assert again.returncode == 3
    assert "does not match the signed manifest" in " ".join(again.stderr.split())
    assert _state(market) == before and not (project / "dativo.lock").exists()
