"""Dativo installed from its wheel into a virtualenv, and plugin projects generated and built with it.

Everything is built once per test session and only when a test asks for it: the wheel and the virtualenv
(:func:`installed`), then each project (:func:`projects`), by its own ``ci.sh``, which builds it and runs its
tests. The projects live in pytest's temporary folder, outside any checkout, and find the SDKs in the
virtualenv's ``site-packages/dativo/sdk`` — as a user's would. Compilers keep their caches between sessions:
cargo's target folder under ``$XDG_CACHE_HOME/dativo-tests`` (the crates that do not change are not
rebuilt), Go's module and build caches, uv's wheels. A missing toolchain fails the tests when ``$CI`` is set
and skips them otherwise (:func:`tests.fixtures.required.unavailable`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.fixtures.required import unavailable

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dativo-tests" / "scaffold"
TOOLS = {
    "python": ["uv"],
    "rust": ["uv", "cargo"],
    "go": ["go"],
    "cpp": ["cmake", "c++"],
}
"""The commands a project of each language needs, besides Python."""
HINTS = {
    "uv": "make install puts it into .venv",
    "cargo": "https://rustup.rs",
    "go": "https://go.dev/dl",
    "cmake": "apt-get install cmake",
    "c++": "apt-get install g++",
}
TIMINGS: dict[str, float] = {}
"""Seconds each build step took this session (shown at the end of the session)."""


def tool(name: str) -> str:
    """The path of a command, looked for on PATH and beside this Python (uv lives in .venv/bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(f"{name} is not installed ({HINTS[name]})")
    return found


@dataclass
class Installed:
    """Dativo installed from its wheel: the virtualenv and the environment its commands run in."""

    wheel: Path
    venv: Path
    env: dict[str, str]

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def dativo(self, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``python -m dativo ARGS`` of the virtualenv in ``cwd``."""
        done = subprocess.run([self.python, "-m", "dativo", *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            pytest.fail(f"dativo {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def run_job(self, project: Path, job: str = "job.yaml") -> dict[str, Any]:
        """``dativo run JOB --json`` in the project's folder: the run report."""
        done = self.dativo("run", job, "--json", cwd=project)
        return json.loads(done.stdout)


def _timed(what: str, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    TIMINGS[what] = time.monotonic() - start
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
                    f"{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """This checkout built as a wheel and installed, with pytest, into a new virtualenv outside of it."""
    uv = tool("uv")
    root = tmp_path_factory.mktemp("installed")
    _timed("wheel", [uv, "build", "--quiet", "--wheel", "--out-dir", str(root / "dist"), str(REPO)],
           timeout=600)
    (wheel,) = (root / "dist").glob("dativo-*.whl")
    venv = root / "venv"
    _timed("virtualenv", [uv, "venv", "--quiet", "--python", sys.executable, str(venv)], timeout=300)
    _timed("install", [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel),
                       "pytest==9.2.0"], timeout=600)
    CACHE.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DATIVO_", "PYTHON", "VIRTUAL_ENV", "CARGO_TARGET_DIR"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        UV=uv,
        PYTHON=str(venv / "bin" / "python"),
        CARGO_TARGET_DIR=str(CACHE / "cargo-target"),  # kept between sessions: only plugin crates rebuild
        GOFLAGS=" ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-mod=mod"])),
    )
    return Installed(wheel, venv, env)


@dataclass
class Project:
    """A generated plugin project, built and tested by its own ``ci.sh``."""

    name: str
    language: str
    kind: str
    path: Path
    ci_output: str
    implementation: str
    """What its job names as the implementation (and ``dativo plugin test`` takes)."""
    seconds: float = 0.0


IMPLEMENTATIONS = {
    "python": "{name}",
    "rust": "{name}",
    "go": "{{command: [./bin/{name}]}}",
    "cpp": "{{lib: ./build/lib{name}.so}}",
}


@dataclass
class Projects:
    """Generates and builds each project the first time a test asks for it; a failed build fails every test
    that needs it, without building it again."""

    installed: Installed
    root: Path
    built: dict[tuple[str, str], Project | BaseException] = field(default_factory=dict)

    def get(self, language: str, kind: str) -> Project:
        key = (language, kind)
        if key not in self.built:
            try:
                self.built[key] = self._build(language, kind)
            except BaseException as exc:  # pytest's Failed and Skipped too: remembered, raised again
                self.built[key] = exc
        result = self.built[key]
        if isinstance(result, BaseException):
            raise result
        return result

    def _build(self, language: str, kind: str) -> Project:
        for command in TOOLS[language]:
            tool(command)
        name = f"t_{language}_{kind}"
        path = self.root / name
        self.installed.dativo("plugin", "new", name, "--lang", language, "--kind", kind, "--dir", str(path),
                              cwd=self.root)
        start = time.monotonic()
        done = _timed(f"{language} {kind}: ci.sh", [str(path / "ci.sh")], cwd=path, env=self.installed.env,
                      timeout=900)
        return Project(name, language, kind, path, done.stdout + done.stderr,
                       IMPLEMENTATIONS[language].format(name=name), time.monotonic() - start)


@pytest.fixture(scope="session")
def projects(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Projects:
    """Plugin projects generated with the installed ``dativo plugin new``, built on first use."""
    return Projects(installed, tmp_path_factory.mktemp("projects"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("dativo plugin new: build times")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")
