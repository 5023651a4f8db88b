"""Local folders handled without ever following a link: the ground a :class:`~.local.LocalStore` stands on.

A plugin that may write into a target (a sandboxed writer granted ``write_paths: [out]``) can leave links
behind; the host runs as whoever started Dativo, often root. So every folder of a local store is opened with
``O_NOFOLLOW`` and held as a file descriptor (a :class:`Folder`); its entries are created, renamed and
deleted relative to that descriptor (``dir_fd``), never through a path a link could redirect, and trees are
deleted with ``shutil.rmtree(dir_fd=…)``, which does not follow links either. A folder the store expects
that is a link (or a file) is refused with :class:`LinkRefused`.

Locks are ``flock`` locks on files opened the same way: :func:`lock` waits for one, :func:`try_lock` takes one
only if it is free (the lease of a run that died is free: the kernel releases a dead process's locks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Callable
from typing import Any

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How folders are opened: never through a final link."""

RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
renameat2: Callable[..., int] | None = getattr(_libc, "renameat2", None)
"""Linux ``renameat2``, or ``None`` where the C library lacks it (then three renames)."""


class Refused(OSError):
    """A store will not use a folder or file as it is: ``strerror`` says why, after the path."""

    def __str__(self) -> str:
        return f"{self.filename} {self.strerror}"


class LinkRefused(Refused):
    """A folder (or file) a store expects is a symbolic link, or not what it should be: it is not followed."""


class Folder:
    """An open folder, reached without following a link; its entries are handled relative to it.

    Args:
        fd: The folder's descriptor (owned: :meth:`close` closes it).
        path: Where it was found, for messages only (the folder may have been renamed since).
    """

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str, *, create: bool = False, follow: bool = False) -> Folder:
        """Open ``path``; its last component must not be a link (the folders above it may be).

        Args:
            path: An absolute path.
            create: Create the folder (not its parents) if it is missing.
            follow: Accept a link as the last component too (a folder the user named, never one of Dativo's).

        Raises:
            LinkRefused: It is a link or not a folder.
            FileNotFoundError: It is missing (and ``create`` is false), or so is its parent.
        """
        if create:
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                pass
        if follow:
            return cls(os.open(path, DIRECTORY & ~os.O_NOFOLLOW), path)
        return cls(_open_dir(path, None, path), path)

    def sub(self, name: str, *, create: bool = False) -> Folder:
        """Open the folder ``name`` in this one (see :meth:`open`)."""
        path = f"{self.path}/{name}"
        if create:
            try:
                os.mkdir(name, 0o755, dir_fd=self.fd)
            except FileExistsError:
                pass
        return Folder(_open_dir(name, self.fd, path), path)

    def names(self) -> list[str]:
        """The names of the entries, sorted."""
        return sorted(os.listdir(self.fd))

    def kind(self, name: str) -> str | None:
        """``dir``, ``link``, ``file`` (anything else) or ``None`` when ``name`` does not exist."""
        try:
            mode = os.lstat(name, dir_fd=self.fd).st_mode
        except FileNotFoundError:
            return None
        return "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"

    def is_folder(self, name: str, folder: Folder) -> bool:
        """Whether the entry ``name`` is ``folder`` itself (the same inode), not something in its place."""
        try:
            entry = os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return False
        return os.path.samestat(entry, os.fstat(folder.fd))

    def remove(self, name: str) -> None:
        """Delete the entry ``name``: a folder with all it holds, or a file or link (never its target).

        A missing entry is fine.
        """
        kind = self.kind(name)
        if kind == "dir":
            shutil.rmtree(name, dir_fd=self.fd, onerror=_missing_is_fine)
        elif kind is not None:
            try:
                os.unlink(name, dir_fd=self.fd)
            except FileNotFoundError:
                pass

    def rename(self, name: str, to: Folder, new_name: str) -> None:
        """Move the entry ``name`` to ``new_name`` in folder ``to`` (on the same file system)."""
        os.rename(name, new_name, src_dir_fd=self.fd, dst_dir_fd=to.fd)

    def create(self, name: str, *, mode: int = 0o644) -> int:
        """Create the file ``name`` (it must not exist) and return its descriptor, open for writing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(name, flags, mode, dir_fd=self.fd)

    def write(self, name: str, data: bytes) -> None:
        """Write the new file ``name`` (replacing a file of that name) and make it durable."""
        if self.kind(name) is not None:
            os.unlink(name, dir_fd=self.fd)
        fd = self.create(name)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, name: str) -> bytes:
        """The content of the file ``name`` (a link is refused)."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefused(errno.ELOOP, "is a symbolic link", f"{self.path}/{name}") from None
            raise
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def open_lock(self, name: str) -> int:
        """A descriptor of the lock file ``name`` (created if missing), for :func:`lock`, :func:`try_lock`."""
        try:
            return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LinkRefused(errno.ELOOP, "is a symbolic link", f"{self.path}/{name}") from None
            raise

    def sync(self) -> None:
        """Make the folder's entries durable (after renames into or out of it)."""
        os.fsync(self.fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_dir(name: str, dir_fd: int | None, path: str) -> int:
    try:
        return os.open(name, DIRECTORY, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
        if stat.S_ISLNK(mode):
            raise LinkRefused(errno.ELOOP, f"is a symbolic link (to {os.readlink(name, dir_fd=dir_fd)})",
                              path) from None
        raise LinkRefused(errno.ENOTDIR, "is not a folder", path) from None


def _missing_is_fine(function: Any, path: str, info: Any) -> None:
    if not isinstance(info[1], FileNotFoundError):
        raise info[1]


def parked(name: str) -> str:
    """Where :func:`exchange` parks the old content of ``name`` when it has to swap with three renames.

    The ``.`` in it keeps it apart from every name built with a run id (run ids have none).
    """
    return f".{name}.dativo.old"


def exchange(folder: Folder, a: str, b: str) -> None:
    """Swap the entries ``a`` and ``b`` of ``folder`` in one ``renameat2(RENAME_EXCHANGE)``.

    Where the exchange is unavailable (an old kernel or C library, some file systems), three renames:
    ``b`` → :func:`parked` (``b``), ``a`` → ``b``, the parked one → ``a``. A kill between them leaves ``b``
    missing or the parked name behind; :meth:`~.local.LocalStore.prepare` puts things right.

    Raises:
        OSError: The swap failed; both entries are as they were.
    """
    if renameat2 is not None:
        if renameat2(folder.fd, os.fsencode(a), folder.fd, os.fsencode(b), RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), f"{folder.path}/{a}")
    old = parked(b)
    folder.rename(b, folder, old)
    try:
        folder.rename(a, folder, b)
    except OSError:
        folder.rename(old, folder, b)
        raise
    folder.rename(old, folder, a)


LOCK_POLL_S = 0.05


def try_lock(fd: int) -> bool:
    """Take the exclusive ``flock`` of ``fd`` if it is free; ``False`` if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock(fd: int, timeout: float) -> bool:
    """Wait at most ``timeout`` seconds for the exclusive ``flock`` of ``fd``; whether it was taken."""
    deadline = time.monotonic() + timeout
    while not try_lock(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(LOCK_POLL_S)
    return True


__all__ = [
    "DIRECTORY", "Folder", "LinkRefused", "Refused", "exchange", "lock", "parked", "renameat2", "try_lock",
]
