"""docs/plugins/publishing.md, run as written: every command of its ``sh`` blocks, in order, in a fresh
virtualenv, on the guide's plugin (tests/market/plugins/orders_plugin copied to orders-plugin/), and its job."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

from tests.market.conftest import ORDERS, REPO, Market

GUIDE = REPO / "docs" / "plugins" / "publishing.md"
_BLOCK = re.compile(r"```(sh|yaml)\n(.*?)```", re.S)


def commands() -> list[str]:
    return [line.strip() for kind, body in _BLOCK.findall(GUIDE.read_text()) if kind == "sh"
            for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_the_guide_covers_the_whole_life_of_a_plugin() -> None:
    verbs = [" ".join(c.split()[:3]) for c in commands()]
    for wanted in ("dativo plugin keygen", "dativo plugin test", "dativo plugin pack", "dativo plugin publish",
                   "dativo plugins search", "dativo plugin install", "dativo plugin verify", "dativo run orders.yaml"):
        assert wanted in verbs, wanted


def test_every_command_of_the_guide(market: Market, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ORDERS, work / "orders-plugin", ignore=shutil.ignore_patterns("__pycache__", "dist"))
    for kind, body in _BLOCK.findall(GUIDE.read_text()):
        first = body.splitlines()[0]
        if kind == "yaml" and first.startswith("# ") and first.endswith(".yaml"):
            (work / first[2:]).write_text(body)
    port = str(_free_port())
    env = market.env(VIRTUAL_ENV=str(market.venv), XDG_CONFIG_HOME=str(tmp_path / "config"))
    background: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands():
            line = command.replace("8000", port)
            if line.endswith("&"):
                background.append(subprocess.Popen(line.rstrip("&"), shell=True, cwd=work, env=env,
                                                   start_new_session=True))
                _wait_for(f"http://127.0.0.1:{port}/index.json")
                continue
            done = subprocess.run(line, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    finally:
        for process in background:  # its own session: the shell and the server it started
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)

    manifest = tomllib.loads((work / "orders-plugin/dist/dativo-orders-demo-1.0.0/dativo-plugin.toml").read_text())
    assert manifest["certification"]["level"] in ("compatible", "certified", "sandbox-safe")
    pin = tomllib.loads((work / "dativo.lock").read_text())["plugin"][0]
    assert (pin["name"], pin["version"], pin["trusted"]) == ("dativo-orders-demo", "1.0.0", True)
    assert pin["certification"] == manifest["certification"]["level"]
    assert pq.read_table(work / "out" / "orders").num_rows == 5
