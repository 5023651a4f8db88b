"""Grants are exact: a ``unix:`` grant binds one socket file and nothing beside it (``unix:/`` does not bind the
host's root), and only the plugin's own package is bound — never the folder of the job file and its secrets.
Each attack runs from inside a real sandboxed plugin that the engine runs."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dativo.config import load_job
from dativo.engine import Engine
from dativo.errors import ConfigError, SandboxError
from tests.plugins.sandboxing import HOSTILE, SECRET, fails, healthy_host, job_file, needs_bwrap, \
    needs_no_sandbox, nothing_published, outcomes, recording, run

pytestmark = [needs_bwrap, pytest.mark.usefixtures(healthy_host.__name__)]


@pytest.fixture
def unix_server(workdir: Path) -> Iterator[tuple[Path, list[bytes]]]:
    """A Unix socket server at run/db.sock, beside a secret file; it records what it receives."""
    folder = workdir / "run"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    path = folder / "db.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o777)
    server.listen()
    yield path, recording(server)
    server.close()


# --- unix: grants -----------------------------------------------------------------------------------------


def test_a_unix_grant_binds_that_socket_and_nothing_beside_it(
    workdir: Path, unix_server: tuple[Path, list[bytes]]
) -> None:
    sock, received = unix_server
    box = {"network": ["unix:run/db.sock"]}
    run(job_file(workdir, f"{HOSTILE}:UnixConnect", options={"paths": [str(sock)]}, box=box))
    assert outcomes(workdir) == {str(sock): "CONNECTED"} and received == [b"through the grant\n"]  # the control
    beside = [str(sock.parent / "secret.txt"), str(sock.parent), "/etc/shadow", str(workdir / "job.yaml")]
    run(job_file(workdir, f"{HOSTILE}:ReadFiles", options={"paths": beside}, box=box))
    seen = outcomes(workdir)
    assert seen[beside[0]].startswith("DENIED:FileNotFoundError") and seen[beside[1]].startswith("DENIED:")
    assert seen[beside[2]].startswith("DENIED:FileNotFoundError") and seen[beside[3]].startswith("DENIED:File")
    assert SECRET not in repr(seen)
    written = [str(sock.parent / "pwned.txt"), str(sock)]
    run(job_file(workdir, f"{HOSTILE}:WriteFiles", options={"paths": written}, box=box))
    seen = outcomes(workdir)
    assert all(seen[path].startswith("DENIED:") for path in written), seen
    assert not (sock.parent / "pwned.txt").exists() and sock.is_socket()


@needs_no_sandbox
@pytest.mark.parametrize("grant", ["unix:/", "unix:/tmp", "unix:run", "unix:run/secret.txt", "unix:run/link.sock",
                                   "unix:run/missing.sock"])
def test_a_unix_grant_of_anything_but_one_socket_file_is_a_config_error(
    workdir: Path, unix_server: tuple[Path, list[bytes]], grant: str
) -> None:
    (workdir / "run" / "link.sock").symlink_to(unix_server[0])
    path = job_file(workdir, f"{HOSTILE}:ReadFiles", options={"paths": ["/etc/shadow"]},
                    box={"network": [grant]}, fallback="default")
    with pytest.raises(ConfigError, match=r"source\.reader\.sandbox\.network") as caught:
        load_job(path)
    reason = {"unix:/": "is a folder", "unix:/tmp": "is a folder", "unix:run": "is a folder",
              "unix:run/secret.txt": "is not a socket", "unix:run/link.sock": "is a symbolic link",
              "unix:run/missing.sock": "No such file or directory"}[grant]
    assert reason in str(caught.value)
    nothing_published(workdir)


def test_a_socket_replaced_by_a_link_to_the_root_after_loading_is_refused_before_binding(
    workdir: Path, unix_server: tuple[Path, list[bytes]]
) -> None:
    sock, _ = unix_server
    job = load_job(job_file(workdir, f"{HOSTILE}:ReadFiles", options={"paths": ["/etc/shadow"]},
                            box={"network": ["unix:run/db.sock"]}, fallback="default"))
    sock.unlink()
    sock.symlink_to("/")  # what the grant names now would bind the host's whole file system
    with pytest.raises(SandboxError, match=r"source\.reader\.sandbox\.network: unix:.*db\.sock is a symbolic link"):
        Engine(job).run()
    nothing_published(workdir)


# --- only the plugin's package -------------------------------------------------------------------------------

BESIDE = '''
import os
from pathlib import Path

import pyarrow as pa

from dativo.api import Reader

HERE = Path(__file__).parent{up}


class BesideReader(Reader):
    """Kept beside the job file: reads the job file, the secret beside it, and lists its folder."""

    schema = pa.schema([("attempt", pa.string()), ("outcome", pa.string())])

    def read(self, split):
        rows = [("listing", " ".join(sorted(os.listdir(HERE))))]
        for name in ("job.yaml", "db-password", "data/orders.csv"):
            try:
                rows.append((name, "READ:" + (HERE / name).read_text()))
            except OSError as exc:
                rows.append((name, f"DENIED:{{type(exc).__name__}}"))
        yield pa.RecordBatch.from_pylist([{{"attempt": a, "outcome": o}} for a, o in rows], schema=self.schema)
'''


@pytest.mark.parametrize("layout", ["module", "package"])
def test_a_plugin_beside_its_job_file_cannot_read_the_job_or_its_secret(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    if layout == "module":
        (workdir / "beside_reader.py").write_text(BESIDE.format(up=""))
        implementation, bound = "beside_reader:BesideReader", "beside_reader.py"
    else:
        (workdir / "beside_pkg").mkdir()
        (workdir / "beside_pkg" / "__init__.py").write_text("")
        (workdir / "beside_pkg" / "reader.py").write_text(BESIDE.format(up=".parent"))
        implementation, bound = "beside_pkg.reader:BesideReader", "beside_pkg"
    (workdir / "db-password").write_text("job-secret-0a9b8c7d")
    monkeypatch.syspath_prepend(str(workdir))  # as with PYTHONPATH=. beside the job
    path = job_file(workdir, implementation, extra=f"# password: ${{file:{workdir / 'db-password'}}}\n")
    report = run(path)  # the job still runs
    assert report.reader is not None and report.reader.origin == "sandbox"
    seen = outcomes(workdir)
    assert seen["listing"] == bound  # the job's folder holds only the plugin inside
    for name in ("job.yaml", "db-password", "data/orders.csv"):
        assert seen[name] == "DENIED:FileNotFoundError", (name, seen[name])
    assert "job-secret" not in repr(seen)
    assert not {"beside_reader", "beside_pkg"} & set(sys.modules)  # never imported into the host


def test_a_job_file_inside_the_plugins_package_is_refused(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = workdir / "plugin_pkg"
    (package / "jobs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "reader.py").write_text(BESIDE.format(up=".parent"))
    monkeypatch.syspath_prepend(str(workdir))
    job = job_file(workdir, "plugin_pkg.reader:BesideReader", fallback="default")
    inside = package / "jobs" / "job.yaml"
    os.replace(job, inside)
    error = fails(inside, SandboxError)
    assert "is inside the plugin's package" in str(error) and str(package) in str(error)
