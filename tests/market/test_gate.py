"""The trust decision, in process: what is not a packed plugin runs as before; a pin is checked before import and
a refused plugin is never replaced by the built-in; the installed-side digest equals the wheel's."""

from __future__ import annotations

import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from dativo.config import SandboxConfig, load_job
from dativo.engine import Engine
from dativo.errors import PluginUntrusted
from dativo.market import wheels
from dativo.market.lock import LOCK_FILE, Lock, Pin
from dativo.market.policy import Gate
from dativo.market.verify import describe, files_digest
from tests.market.conftest import Market


def test_built_ins_own_code_and_hand_installed_packages_run_as_configured(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text("from dativo.api import Reader\n")
    box = SandboxConfig()
    gate = Gate(tmp_path, "refuse")  # even the strictest policy leaves them alone
    for name in ("csv", "mine:Reader", "acme_orders", "acme_readers:OrdersReader", "no_such_plugin"):
        assert gate.admit("reader", name, box) == (name, box)
    assert "mine" not in sys.modules  # found, never imported


def test_a_pin_that_does_not_match_stops_the_job_without_fallback(tmp_path: Path) -> None:
    lock = Lock(tmp_path / LOCK_FILE)
    lock.pin(Pin(name="acme-readers", version="1.0.0", kind="reader", entry_point="acme_orders", artefact="a.whl",
                 artefact_sha256="a" * 64, files_sha256="b" * 64, manifest_sha256="c" * 64, trusted=True))
    lock.write()
    (tmp_path / "data.csv").write_text("id\n1\n")
    job = tmp_path / "job.yaml"
    job.write_text("version: 1\nname: pinned\nsource: {type: csv, path: data.csv, reader: {type: custom, "
                   "implementation: acme_orders, fallback: default}}\ntarget: {type: parquet, path: out}\n")
    with pytest.raises(PluginUntrusted) as caught:
        Engine(load_job(job), work_dir=tmp_path / ".dativo").run()
    assert caught.value.exit_code == 3
    assert f"does not match {tmp_path / LOCK_FILE}" in str(caught.value) and "b" * 64 in str(caught.value)
    assert not (tmp_path / "out").exists()  # the built-in csv reader did not step in


def test_the_installed_digest_is_the_wheels_and_an_added_file_is_seen(market: Market, tmp_path: Path) -> None:
    packed = market.orders["1.0.0"]
    site = tmp_path / "site"
    with zipfile.ZipFile(packed.wheel) as archive:
        archive.extractall(site)
    wheel = wheels.read(packed.wheel)
    found = describe(metadata.PathDistribution(site / wheel.dist_info))
    assert found.manifest is not None and found.manifest.name == "dativo-orders-demo"
    assert files_digest(found) == (wheel.files_digest(), [])
    (site / "dativo_orders_demo" / "__pycache__").mkdir()
    (site / "dativo_orders_demo" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode")  # not counted
    assert files_digest(found)[0] == wheel.files_digest()
    (site / "dativo_orders_demo" / "extra.py").write_text("print('hi')\n")
    digest, problems = files_digest(found)
    assert digest != wheel.files_digest() and problems == ["dativo_orders_demo/extra.py was added"]


def test_a_wheel_whose_record_lies_is_refused(market: Market, tmp_path: Path) -> None:
    wheel = wheels.read(market.orders["1.0.0"].wheel)
    target = tmp_path / wheel.filename
    with zipfile.ZipFile(market.orders["1.0.0"].wheel) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            out.writestr(info, data + b"# more\n" if info.filename.endswith("__init__.py") else data)
    with pytest.raises(PluginUntrusted, match="__init__.py does not match the wheel's RECORD"):
        wheels.read(target)
