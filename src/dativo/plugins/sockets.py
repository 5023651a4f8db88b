"""Where a started plugin listens: a folder the host makes, and the one socket the host connects to.

The host chooses the address, never the plugin (``docs/plugins/protocol.md`` §1). For every start it makes::

    dativo-plugin-XXXXXXXX/   mode 0700, the host's, an unpredictable name (tempfile.mkdtemp)
        plugin/               the plugin's: $DATIVO_FLIGHT_SOCKET is plugin/plugin.sock (a sandbox binds this)
        host/                 the host's only: where the socket the plugin made is linked once checked

A handshake must name exactly ``grpc+unix://$DATIVO_FLIGHT_SOCKET``. The host then hard-links that name into
``host/`` without following a symbolic link, and checks with ``lstat`` that what it linked is a socket owned
by the plugin's uid. It connects only to the link, which the plugin cannot replace afterwards (gRPC dials the
path again on every reconnect). Any other location — a TCP address, another path, a symbolic link out of the
folder — is refused before anything is sent to it.

:func:`socket_folder` makes the folder; a launcher that runs the plugin as another uid (a sandbox started as
root without a user namespace) passes that uid, and ``plugin/`` becomes that uid's, mode 0700.

The host holds an exclusive ``flock`` on ``host/owner`` while the folder is in use, so a folder whose host
was killed (SIGKILL, a crash, a lost machine's container) is known by a lock anyone can take: the first
folder a process makes sweeps such folders of its own uid out of the same temporary directory
(:func:`sweep`). A folder without that file (being made, or left by an older Dativo) is swept once it is an
hour old.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dativo.plugins.protocol import SOCKET_NAME, unix_location

log = logging.getLogger(__name__)

_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS
PREFIX = "dativo-plugin-"
OWNER = Path("host") / "owner"
"""The file whose ``flock`` the host holds while the folder is in use."""
UNLOCKED_STALE_S = 3600.0
"""How old a folder without :data:`OWNER` must be to be swept (one being made has none for a moment)."""
_swept: set[str] = set()
_swept_lock = threading.Lock()


class SocketFolder:
    """The private folder of one started plugin's Flight socket (made by :func:`socket_folder`).

    Args:
        root: A new, empty folder of mode 0700 that only the host can write to.
        uid: The uid the plugin runs as (default: the host's).
        gid: That uid's group, when it is not the host's uid.

    Attributes:
        root: The folder (removed by :meth:`remove`).
        listen: The plugin's folder, the only part a sandbox binds.
        path: The socket the plugin must listen on (``$DATIVO_FLIGHT_SOCKET``).
        uid: The uid the plugin runs as, which must own the socket.
    """

    def __init__(self, root: Path, uid: int | None = None, gid: int | None = None) -> None:
        self.root = root
        self.listen = root / "plugin"
        self.path = self.listen / SOCKET_NAME
        self.uid = os.getuid() if uid is None else uid
        self._accepted = root / "host" / SOCKET_NAME
        self.listen.mkdir(mode=0o700)
        self._accepted.parent.mkdir(mode=0o700)
        self._owner = _hold(root / OWNER)
        if self.uid != os.getuid():
            os.chown(self.listen, self.uid, os.getgid() if gid is None else gid)
            root.chmod(0o711)

    @property
    def location(self) -> str:
        """``grpc+unix://`` of :attr:`path`: the one location a handshake may name."""
        return unix_location(str(self.path))

    def accept(self, location: Any) -> str:
        """Check the location a handshake names, and return where the host may connect.

        Raises:
            ValueError: Saying why the location is refused; nothing has connected to it.
        """
        if not isinstance(location, str) or not location:
            raise ValueError("it names no location")
        if location != self.location:
            raise ValueError(f"it names {location[:200]!r}, not the socket Dativo gave it ({self.location})")
        self._accepted.unlink(missing_ok=True)  # what an earlier, refused handshake left
        try:
            os.link(self.path, self._accepted, follow_symlinks=False)
        except FileNotFoundError:
            raise ValueError(f"nothing listens at {self.path}") from None
        except OSError as exc:
            raise ValueError(f"{self.path} cannot be checked: {exc.strerror or exc}") from None
        found = os.lstat(self._accepted)
        if stat.S_ISLNK(found.st_mode):
            target = os.readlink(self._accepted)
            raise ValueError(f"{self.path} is a symbolic link (to {target[:200]!r}), not a socket")
        if not stat.S_ISSOCK(found.st_mode):
            raise ValueError(f"{self.path} is not a socket")
        if found.st_uid != self.uid:
            raise ValueError(f"{self.path} belongs to uid {found.st_uid}, not to the plugin's ({self.uid})")
        return unix_location(str(self._accepted))

    def remove(self) -> None:
        """Remove the folder and everything in it, then let go of its lock."""
        shutil.rmtree(self.root, ignore_errors=True)
        if self._owner >= 0:
            os.close(self._owner)
            self._owner = -1


def _hold(path: Path) -> int:
    """Create ``path`` locked: made under another name, locked, then renamed, so that no sweep ever finds it
    unlocked. Returns the descriptor holding the lock (not inherited by the plugin's process)."""
    pending = path.with_name(path.name + ".new")
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(pending, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def sweep(parent: Path) -> int:
    """Remove the plugin folders in ``parent`` whose host is gone: this uid's, with an :data:`OWNER` nobody
    locks (or none, and an hour old). Anything else — another user's, a symbolic link, a live host's — is
    left alone.

    Returns:
        How many folders were removed.
    """
    removed = 0
    now = time.time()
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(PREFIX)]
    except OSError:
        return 0
    for entry in entries:
        path = Path(entry.path)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        try:
            fd = os.open(path / OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if now - info.st_mtime > UNLOCKED_STALE_S:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its host is alive
            os.close(fd)
            continue
        try:  # ours now: no host holds it, and none can take it while we remove it
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    if removed:
        log.debug("removed %d plugin folder(s) of hosts that are gone from %s", removed, parent)
    return removed


def _sweep_once(parent: Path) -> None:
    with _swept_lock:
        if str(parent) in _swept:
            return
        _swept.add(str(parent))
    sweep(parent)


def socket_folder(uid: int | None = None, gid: int | None = None) -> SocketFolder:
    """Make the private folder of one plugin start, with a path short enough for ``sun_path``.

    Args:
        uid: The uid the plugin runs as, when it is not the host's: ``plugin/`` becomes its own (mode 0700)
            and the folder above it only traversable (0711), so no one else may enter it.
        gid: That uid's group (default: the host's).
    """
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    if len(str(root / "plugin" / SOCKET_NAME)) > _PATH_MAX:
        shutil.rmtree(root, ignore_errors=True)
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir="/tmp"))
    _sweep_once(root.parent)
    try:
        return SocketFolder(root, uid, gid)
    except OSError:
        shutil.rmtree(root, ignore_errors=True)
        raise
