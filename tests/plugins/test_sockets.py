"""The socket folder of a started plugin: private, and the only place a handshake may name."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dativo.plugins import sockets
from dativo.plugins.sockets import UNLOCKED_STALE_S, SocketFolder, socket_folder
from tests.conftest import subprocess_env

NOBODY = 65534


@pytest.fixture
def folder() -> Iterator[SocketFolder]:
    made = socket_folder()
    yield made
    made.remove()
    assert not made.root.exists()


def listen(path: Path) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    return listener


def test_the_folder_is_the_host_s_and_private(folder: SocketFolder) -> None:
    for path in (folder.root, folder.listen):
        found = os.lstat(path)
        assert stat.S_ISDIR(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o700
        assert found.st_uid == os.getuid()
    assert folder.path == folder.listen / "plugin.sock" and folder.listen.parent == folder.root
    assert len(str(folder.path)) <= 100  # fits sun_path
    assert folder.root != socket_folder().root  # a new, unpredictable name each time (mkdtemp)


def test_the_socket_it_gave_is_accepted_and_connected_through_a_link(folder: SocketFolder) -> None:
    with listen(folder.path):
        location = folder.accept(folder.location)
        assert location != folder.location and location.startswith(f"grpc+unix://{folder.root}/")
        linked = Path(location.removeprefix("grpc+unix://"))
        assert os.lstat(linked).st_ino == os.lstat(folder.path).st_ino  # the very socket, out of its reach
        folder.path.unlink()  # the plugin replaces its socket by a link elsewhere: the host's link stays put
        folder.path.symlink_to("/run/elsewhere.sock")
        assert stat.S_ISSOCK(os.lstat(linked).st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(linked))


@pytest.mark.parametrize(
    ("location", "why"),
    [
        (None, "it names no location"),
        ("grpc://127.0.0.1:8815", "it names 'grpc://127.0.0.1:8815', not the socket Dativo gave it"),
        ("grpc+unix:///tmp/other.sock", "it names 'grpc+unix:///tmp/other.sock', not the socket"),
    ],
)
def test_any_other_location_is_refused(folder: SocketFolder, location: object, why: str) -> None:
    with listen(folder.path), pytest.raises(ValueError, match="^" + re.escape(why)):
        folder.accept(location)


def test_the_right_name_must_be_a_socket(folder: SocketFolder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing listens at"):
        folder.accept(folder.location)
    with listen(tmp_path / "outside.sock"):
        folder.path.symlink_to(tmp_path / "outside.sock")
        with pytest.raises(ValueError, match=r"is a symbolic link \(to '.*outside.sock'\), not a socket"):
            folder.accept(folder.location)
    folder.path.unlink()
    folder.path.write_text("not a socket")
    with pytest.raises(ValueError, match="is not a socket"):
        folder.accept(folder.location)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs a plugin as another uid")
def test_a_plugin_of_another_uid_gets_its_folder_and_must_own_the_socket() -> None:
    folder = socket_folder(NOBODY, NOBODY)
    try:
        assert stat.S_IMODE(os.lstat(folder.root).st_mode) == 0o711  # only traversable
        found = os.lstat(folder.listen)
        assert (found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode)) == (NOBODY, NOBODY, 0o700)
        with listen(folder.path), pytest.raises(ValueError, match="belongs to uid 0, not to the plugin's"):
            folder.accept(folder.location)  # a socket of root's, not the plugin's
        folder.path.unlink()
        child = os.fork()
        if child == 0:  # the plugin, as uid 65534: only the folder it was given is writable to it
            try:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                listen(folder.path)
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        assert folder.accept(folder.location).startswith("grpc+unix://")
    finally:
        folder.remove()


# --- folders of hosts that are gone ---------------------------------------------------------------------------

HOST = """
import os, signal, sys, tempfile
tempfile.tempdir = sys.argv[1]
from dativo.plugins.sockets import socket_folder
folder = socket_folder()
print(folder.root, flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # as a killed `dativo run` dies: nothing cleans up
sys.stdin.read()  # alive until the test closes stdin
folder.remove()
"""


@pytest.fixture
def parent() -> Iterator[Path]:
    """A temporary directory short enough for a socket path, holding nothing else."""
    import shutil

    made = Path(tempfile.mkdtemp(prefix="sweep-", dir="/tmp"))
    yield made
    shutil.rmtree(made, ignore_errors=True)


def host(parent: Path, mode: str) -> tuple[subprocess.Popen[str], Path]:
    process = subprocess.Popen([sys.executable, "-c", HOST, str(parent), mode], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert process.stdout is not None
    root = Path(process.stdout.readline().strip())
    assert root.parent == parent, root
    return process, root


def test_the_folder_of_a_killed_host_is_swept_by_the_next_start(parent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    killed, dead = host(parent, "kill")
    assert killed.wait(timeout=30) == -signal.SIGKILL and (dead / "plugin").is_dir()  # left behind
    alive, living = host(parent, "live")
    young = parent / "dativo-plugin-young"  # no owner file: being made, or an older Dativo's
    old = parent / "dativo-plugin-old"
    for folder in (young, old):
        folder.mkdir()
    os.utime(old, (time.time() - 2 * UNLOCKED_STALE_S, time.time() - 2 * UNLOCKED_STALE_S))
    others = parent / "dativo-plugin-others"  # another user's
    others.mkdir()
    os.chown(others, NOBODY, NOBODY)
    target = parent / "precious"
    target.mkdir()
    (target / "keep").write_text("x")
    (parent / "dativo-plugin-link").symlink_to(target)
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(parent))
        monkeypatch.setattr(sockets, "_swept", set())
        made = socket_folder()  # the first start of this process sweeps
        try:
            assert not dead.exists() and not old.exists()
            assert living.is_dir() and young.is_dir() and others.is_dir() and (target / "keep").exists()
            assert (parent / "dativo-plugin-link").is_symlink()
            assert sockets.sweep(parent) == 0  # the live host's folder and this one are locked
        finally:
            made.remove()
    finally:
        assert alive.stdin is not None
        alive.stdin.close()
        assert alive.wait(timeout=30) == 0
    assert not living.exists()  # its host removed it on the way out


def test_a_folder_is_never_found_unlocked(parent: Path) -> None:
    """The owner file appears locked already: a sweep racing a start never takes a live folder."""
    made = [SocketFolder(Path(tempfile.mkdtemp(prefix=sockets.PREFIX, dir=parent))) for _ in range(20)]
    try:
        assert sockets.sweep(parent) == 0 and all(m.root.exists() for m in made)
        assert not list(parent.glob("*/host/owner.new"))
    finally:
        for m in made:
            m.remove()
    assert list(parent.iterdir()) == []
