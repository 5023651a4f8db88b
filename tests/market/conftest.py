"""What the distribution tests share: publisher keys, packed plugins, indexes on disk and over HTTP, and a fresh
virtualenv with a ``dativo`` command to install them into and run jobs with.

Everything session-scoped is built once: the virtualenv (``uv venv`` and an editable Dativo), the packs of the
test plugin ``dativo-orders-demo`` (tests/market/plugins/orders_plugin, 1.0.0 and 1.1.0, signed; 1.0.0 signed
by a key nobody trusts; 1.0.0 unsigned) and of the Go writer examples/plugins/go_parquet_writer (its binary
built by ``make plugins-go``). Each test works in its own project folder with its own ``dativo.lock``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dativo.market import index, pack, sign
from dativo.market.pack import Packed
from dativo.plugins import bwrap
from tests.fixtures.required import unavailable

REPO = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parent / "plugins"
ORDERS = PLUGINS / "orders_plugin"
GO_PARQUET = REPO / "examples" / "plugins" / "go_parquet_writer"
GO_BINARY = GO_PARQUET / "python" / "dativo_go_parquet" / "bin" / "go_parquet_writer"
MARKER_ENV = "DATIVO_TEST_IMPORT_MARKER"


def orders_project(folder: Path, version: str = "1.0.0") -> Path:
    """A copy of the test plugin's project at ``version`` (the manifest's version is the only one)."""
    target = folder / f"orders-{version}"
    shutil.copytree(ORDERS, target, ignore=shutil.ignore_patterns("__pycache__", "dist"))
    manifest = target / "dativo-plugin.toml"
    manifest.write_text(manifest.read_text().replace('version = "1.0.0"', f'version = "{version}"'))
    return target


@dataclass
class Keys:
    private: Path
    public: Path
    key: sign.PublicKey


@dataclass
class Ran:
    """What a ``dativo`` command did."""

    returncode: int
    stdout: str
    stderr: str
    loaded: list[str] | None
    """Which of the modules asked for the command had imported when it ended (``None``: not known)."""


@dataclass
class Market:
    """The session's packs, indexes and virtualenv."""

    root: Path
    venv: Path
    config: Path
    publisher: Keys
    stranger: Keys
    orders: dict[str, Packed]
    go: Packed
    index: Path
    url: str
    server: subprocess.Popen[str] | None = None

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site(self) -> Path:
        out = subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())

    def env(self, **extra: str) -> dict[str, str]:
        """A user's environment: the venv's ``dativo`` and ``uv`` on PATH, the session's config folder."""
        keep = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("DATIVO_")}
        path = os.pathsep.join([str(self.venv / "bin"), str(self.root / "tools"), "/usr/local/bin", "/usr/bin",
                                "/bin", "/usr/sbin", "/sbin"])
        return {**keep, "PATH": path, "XDG_CONFIG_HOME": str(self.config), "NO_COLOR": "1", "COLUMNS": "200", **extra}

    def dativo(self, *args: str, cwd: Path, env: dict[str, str] | None = None, modules: tuple[str, ...] = (),
               real: bool = False) -> Ran:
        """Run ``dativo ARGS`` of the venv in ``cwd``, as a user would.

        Args:
            modules: Module names to look for in the command's ``sys.modules`` when it ends (:attr:`Ran.loaded`).
            real: Start the venv's ``dativo`` script as a new process (else a child forked from a process of
                the venv that imported the CLI already, which is the same but quicker).
        """
        variables = self.env(**(env or {}))
        if real:
            done = subprocess.run([str(self.venv / "bin" / "dativo"), *args], cwd=cwd, env=variables,
                                  capture_output=True, text=True, timeout=300)
            return Ran(done.returncode, done.stdout, done.stderr, None)
        assert self.server is not None and self.server.stdin is not None and self.server.stdout is not None
        files = {name: self.root / "io" / f"{uuid.uuid4().hex}.{name}" for name in ("stdout", "stderr", "report")}
        files["stdout"].parent.mkdir(exist_ok=True)
        request = {"argv": list(args), "cwd": str(cwd), "env": variables, "modules": list(modules),
                   **{k: str(v) for k, v in files.items()}}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        answer = json.loads(self.server.stdout.readline())
        report = json.loads(files["report"].read_text()) if files["report"].exists() else {"loaded": None}
        return Ran(answer["code"], files["stdout"].read_text(), files["stderr"].read_text(), report["loaded"])

    def installed(self) -> set[str]:
        """The ``.dist-info`` folders of the venv (to prove that a refused install changed nothing)."""
        return {p.name for p in self.site.glob("*.dist-info")}


def _publish(packed: Packed, into: Path) -> None:
    index.publish(packed.folder, into)


@pytest.fixture(scope="session")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    if not os.access(GO_BINARY, os.X_OK):
        unavailable(f"{GO_BINARY} is not built: make plugins-go")
    uv = pack.find_uv()
    if uv is None:
        unavailable("uv is not installed: make install")
    root = tmp_path_factory.mktemp("market")
    (root / "tools").mkdir()
    (root / "tools" / "uv").symlink_to(uv)
    config = root / "config"
    keys = {}
    for who in ("publisher", "stranger"):
        private, public, key = sign.generate(root / "keys" / who, f"{who} of the tests")
        keys[who] = Keys(private, public, key)
    builds = root / "builds"
    orders = {
        "1.0.0": pack.pack(orders_project(builds), out=root / "packs", key=keys["publisher"].private),
        "1.1.0": pack.pack(orders_project(builds, "1.1.0"), out=root / "packs", key=keys["publisher"].private),
        "stranger": pack.pack(orders_project(builds / "stranger"), out=root / "packs-stranger",
                              key=keys["stranger"].private),
        "unsigned": pack.pack(orders_project(builds / "unsigned"), out=root / "packs-unsigned",
                              use_default_key=False),
    }
    go = pack.pack(GO_PARQUET, out=root / "packs", key=keys["publisher"].private)
    indexes = root / "indexes"
    for packed in (orders["1.0.0"], orders["1.1.0"], go):
        _publish(packed, indexes / "main")
    _publish(orders["stranger"], indexes / "stranger")
    _publish(orders["unsigned"], indexes / "unsigned")

    venv = root / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "-e", str(REPO)],
                   check=True, timeout=600)

    handler = functools.partial(_QuietHandler, directory=str(indexes))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-index-server", daemon=True)
    thread.start()
    found = Market(root, venv, config, keys["publisher"], keys["stranger"], orders, go, indexes / "main",
                   f"http://127.0.0.1:{server.server_address[1]}/main/")
    found.server = subprocess.Popen([str(found.python), str(Path(__file__).with_name("forkserver.py"))],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=found.env(),
                                    cwd=root)
    try:
        yield found
    finally:
        assert found.server.stdin is not None
        found.server.stdin.close()
        found.server.wait(30)
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project folder, with data/items.csv (id, name)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    return tmp_path


def orders_job(folder: Path, *, rows: int = 4, peek: str | None = None, extra: str = "",
               implementation: str = "orders_demo") -> Path:
    """A job reading ``rows`` orders with the test plugin into out/orders."""
    options = {"rows": rows, **({"peek": peek} if peek else {})}
    job = folder / "orders.yaml"
    job.write_text(
        "version: 1\nname: orders\n"
        f"source: {{type: orders, reader: {{type: custom, implementation: '{implementation}', fallback: fail, "
        f"options: {json.dumps(options)}}}}}\n"
        "target: {type: parquet, path: out/orders}\n" + extra
    )
    return job


def go_job(folder: Path) -> Path:
    """A job from data/items.csv into out/items, written by the Go writer (a sandboxed plugin's working
    directory is a private /tmp: the target is named by its absolute path)."""
    job = folder / "items.yaml"
    job.write_text(
        "version: 1\nname: items\nsource: {type: csv, path: data/items.csv}\n"
        f"target: {{type: parquet, path: '{folder / 'out' / 'items'}', writer: {{type: custom, "
        "implementation: go_parquet, fallback: fail}}\n"
    )
    return job


@pytest.fixture
def sandbox_works(request: pytest.FixtureRequest) -> None:
    """Bubblewrap can start a sandbox here (else: fail under CI, skip elsewhere)."""
    status = bwrap.probe()
    if not status.ok:
        unavailable(f"no working bubblewrap: {status.reason} (`dativo check` says how to fix it)")
