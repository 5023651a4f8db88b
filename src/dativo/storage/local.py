"""A store on local disk: a lock per target, a lease per run, one ``rename`` or directory exchange per commit.

Beside and inside the dataset's folder ``<parent>/<name>/``::

    <parent>/.<name>.dativo.lock                     the target's lock (``flock``)
    <parent>/.<name>.dativo-<run id>/                an overwrite under way: the new folder, then the old one
    <parent>/<name>/_dativo/staging/<run id>/.lease  locked by the live run that stages in that folder
    <parent>/<name>/<seq>-<run id>/                  a committed run

**Lock.** Every step that changes the bookkeeping holds the target's lock: :meth:`LocalStore.prepare` (its
recovery and sweep, the run's staging folder), :meth:`LocalStore.commit` (from reading the records to the end
of the publication) and :meth:`LocalStore.discard`. Two runs on one target thus commit one after the other:
the second waits (at most :data:`LOCK_TIMEOUT_S`), reads the records again and takes the next slot. Files are
written without the lock. The lock file lies beside the folder because an overwrite replaces the folder.

**Leases.** A run's staging folder holds ``.lease``, ``flock``-ed by the live run from the folder's creation
to its commit or abort; the kernel releases it when the process dies. ``prepare`` deletes at once the staging
whose lease it can take, and staging without a lease (another writer's) once it is older than
:data:`~dativo.storage.store.STALE_STAGING_S`.

**Append.** The record is written into the run's staging folder, which is renamed to ``<seq>-<run id>``.

**Overwrite.** Only a folder Dativo owns is replaced: each entry is ``_dativo`` or a run folder holding its
record (or there is none); anything else is refused. ``.<name>.dativo-<run id>/`` is built beside the folder:
the run's staging folder is renamed into it as the run folder, then ``_dativo`` (with the staging of other
runs, whose open descriptors stay valid), and the two folders are swapped in one
``renameat2(RENAME_EXCHANGE)``: the commit point. The old content, now under the temporary name, is deleted.

**Recovery.** Each locked step first puts right what a killed overwrite left: the folder, if it is missing
while its parked copy exists (killed between the renames of :func:`~.dirs.exchange`'s fallback), is renamed
back; a ``_dativo`` left in a temporary folder is moved back; temporary folders are deleted. A kill at any
moment leaves the old content or the whole new one, and the next run on the target tidies up.

**Links.** Every folder is opened with ``O_NOFOLLOW`` and handled through its descriptor (:mod:`.dirs`): the
dataset's folder, ``_dativo``, ``_dativo/staging``, the run's staging and the run folders must be real
folders, or the store refuses to touch them (:class:`~.dirs.LinkRefused`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from dativo.errors import CommitFailed, ConfigError, ConnectionFailed
from dativo.names import check_name, join
from dativo.storage import dirs
from dativo.storage.dirs import Folder, LinkRefused, Refused
from dativo.storage.record import LEASE, MARKER, RUN_FOLDER, CommitRecord, check_data_file
from dativo.storage.store import NOTHING_PUBLISHED, STALE_STAGING_S, Store

log = logging.getLogger("dativo.storage")

LOCK_TIMEOUT_S = 600.0
"""How long a run waits for the target's lock before it gives up (another run's commit holds it)."""

CONTROL = "_dativo"


def target_problem(path: str) -> str | None:
    """Why a local folder must not be a target, or ``None``: Dativo fills it, and an overwrite replaces it.

    Refused: an empty path (the current folder), the file system's root or a mounted file system's, a
    top-level folder, the current folder and the home folder, and any folder that holds one of them.

    Args:
        path: The folder as the job names it (``~`` is expanded, relative to the current folder).
    """
    if not path.strip():
        return "it is empty, which would mean the current folder"
    folder = os.path.realpath(os.path.expanduser(path))
    if os.path.dirname(folder) == folder:
        return "it is the root of the file system"
    if os.path.ismount(folder):
        return f"it is the root of the file system mounted at {folder}"
    if os.path.dirname(folder) == os.path.dirname(os.path.dirname(folder)):
        return f"it is the top-level folder {folder}"
    others = [(what, os.path.realpath(other)) for what, other in
              (("the current folder", os.getcwd()), ("the home folder", os.path.expanduser("~")))]
    for what, other in others:
        if folder == other:
            return f"it is {what}"
    for what, other in others:
        if other.startswith(folder.rstrip("/") + "/"):
            return f"it holds {what} ({other})"
    return None


@contextmanager
def _folders(parent: Folder, *names: str, create: bool) -> Iterator[list[Folder] | None]:
    """The folders ``parent/names[0]/names[1]/…``, each opened without following a link; ``None`` when one
    is missing and ``create`` is false."""
    with ExitStack() as stack:
        chain, current = [], parent
        for name in names:
            if not create and current.kind(name) is None:
                yield None
                return
            current = stack.enter_context(current.sub(name, create=create))
            chain.append(current)
        yield chain


class LocalStore(Store):
    """A dataset's folder on local disk.

    Args:
        directory: The folder: a path (``~`` expanded) or a ``file://`` URL.
        logger: Where warnings go.
        label: How messages name the option that chose the folder.

    Raises:
        ValueError: The folder must not be a target (see :func:`target_problem`).
    """

    local = True

    def __init__(
        self, directory: str | os.PathLike[str], *, logger: logging.Logger | None = None, label: str = "path"
    ) -> None:
        text = os.fspath(directory).removeprefix("file://")
        problem = target_problem(text)
        if problem is not None:
            raise ValueError(f"{label} {text!r} cannot be a target: {problem}")
        self.directory = Path(os.path.normpath(os.path.abspath(os.path.expanduser(text))))
        self.root = str(self.directory)
        self.location = self.root
        self.fs = pafs.LocalFileSystem()
        self.logger = logger or log
        self.label = label
        self.name = self.directory.name
        self._guard = threading.RLock()
        self._lock_fd: int | None = None
        self._leases: dict[str, tuple[Folder, int]] = {}

    # --- the lock, recovery and leases ------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[Folder]:
        """Hold the target's lock (reentrant within this store); yields the parent folder, repaired."""
        with self._guard:
            parent_path = str(self.directory.parent)
            os.makedirs(parent_path, exist_ok=True)
            with Folder.open(parent_path, follow=True) as parent:
                if self._lock_fd is not None:
                    yield parent
                    return
                fd = self._open_lock(parent)
                try:
                    if not dirs.lock(fd, LOCK_TIMEOUT_S):
                        raise Refused(errno.ETIMEDOUT, f"is held by another run for more than "
                                      f"{LOCK_TIMEOUT_S:.0f} s", f"the lock of {self.location}")
                    self._lock_fd = fd
                    try:
                        self._recover(parent)
                        yield parent
                    finally:
                        self._lock_fd = None
                finally:
                    os.close(fd)

    def _open_lock(self, parent: Folder) -> int:
        """The lock file beside the folder; inside its ``_dativo`` where the parent is read-only (no overwrite
        can have replaced the folder there, nor will: it needs the parent)."""
        try:
            return parent.open_lock(f".{self.name}.dativo.lock")
        except PermissionError:
            pass
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
        with _folders(parent, self.name, CONTROL, create=True) as chain:
            assert chain is not None
            return chain[-1].open_lock("lock")

    def _recover(self, parent: Folder) -> None:
        """Put right what a killed overwrite left beside the folder (see the module's *Recovery*)."""
        prefix, old = f".{self.name}.dativo-", dirs.parked(self.name)
        leftovers = [name for name in parent.names() if name.startswith(prefix) or name == old]
        if not leftovers:
            return
        if parent.kind(self.name) is None and parent.kind(old) == "dir":
            parent.rename(old, parent, self.name)
            self.logger.warning("%s: an overwrite was interrupted before its commit; the folder is back",
                                self.location)
        with parent.sub(self.name, create=True) as target:
            for name in leftovers:
                if target.kind(CONTROL) is not None:
                    break
                if parent.kind(name) == "dir":
                    with parent.sub(name) as leftover:
                        if leftover.kind(CONTROL) == "dir":
                            leftover.rename(CONTROL, target, CONTROL)
        for name in leftovers:
            parent.remove(name)
        parent.sync()

    def _dead(self, staging: Folder, name: str, *, own: bool) -> bool:
        """Whether the staging folder ``name`` belongs to no live run: its lease is free (or, without one,
        it is run ``own``'s leftover or older than the stale age)."""
        if staging.kind(name) != "dir":
            return True
        with staging.sub(name) as folder:
            kind = folder.kind(LEASE)
            if kind == "file":
                fd = folder.open_lock(LEASE)
                try:
                    return dirs.try_lock(fd)
                finally:
                    os.close(fd)
            if kind is None and not own:
                return time.time() - os.fstat(folder.fd).st_mtime > STALE_STAGING_S
            return True

    def _lease(self, staging: Folder, run_id: str, *, create: bool) -> Folder:
        """Open run ``run_id``'s staging folder and take its lease; this store holds it until released."""
        folder = staging.sub(run_id, create=create)
        try:
            fd = folder.open_lock(LEASE)
            if not dirs.try_lock(fd):
                os.close(fd)
                raise Refused(errno.EBUSY, f"is in use by a live run {run_id} (another process)", folder.path)
        except BaseException:
            folder.close()
            raise
        self._leases[run_id] = (folder, fd)
        return folder

    def _release(self, run_id: str) -> None:
        held = self._leases.pop(run_id, None)
        if held is not None:
            held[0].close()
            os.close(held[1])

    def _stage(self, run_id: str) -> Folder:
        """Run ``run_id``'s staging folder, leased by this store; what dead attempts left there is deleted."""
        with self._guard:
            held = self._leases.get(run_id)
            if held is not None:
                return held[0]
            check_name(run_id, "run id")
            with self._locked() as parent, \
                    _folders(parent, self.name, CONTROL, "staging", create=True) as chain:
                assert chain is not None
                staging = chain[-1]
                kind = staging.kind(run_id)
                if kind == "link":
                    staging.sub(run_id)  # raises LinkRefused, naming where the link points
                if kind is not None:
                    if not self._dead(staging, run_id, own=True):
                        raise Refused(errno.EBUSY, f"is in use by a live run {run_id} (another process)",
                                      f"{staging.path}/{run_id}")
                    staging.remove(run_id)
                return self._lease(staging, run_id, create=True)

    def _claim(self, staging: Folder, run_id: str) -> Folder:
        """The staging folder of run ``run_id`` for its commit: this store's, or one no live run holds."""
        held = self._leases.get(run_id)
        if held is not None:
            if not staging.is_folder(run_id, held[0]):
                raise Refused(errno.ENOENT, "was moved or deleted by something else", held[0].path)
            return held[0]
        return self._lease(staging, run_id, create=staging.kind(run_id) is None)

    def close(self) -> None:
        """Release the leases of this store's runs (their staging is swept by a later run)."""
        with self._guard:
            for run_id in list(self._leases):
                self._release(run_id)

    # --- reading ----------------------------------------------------------------------------------------

    def _run_folders(self, target: Folder) -> list[tuple[int, str]]:
        """(slot, name) of every folder named like a run folder, newest first; a link there is refused."""
        found = []
        for name in target.names():
            match = RUN_FOLDER.match(name)
            if match is None:
                continue
            kind = target.kind(name)
            if kind == "link":
                raise LinkRefused(errno.ELOOP, "is a symbolic link where a run folder belongs",
                                  f"{target.path}/{name}")
            if kind == "dir":
                found.append((int(match[1]), name))
        return sorted(found, reverse=True)

    def records(self) -> list[CommitRecord]:
        """The records of the run folders, newest first (each checked: see :meth:`CommitRecord.check`).

        Read without the lock: a folder an overwrite replaced while it was read is read again.
        """
        for attempt in range(3):
            try:
                return self._read_records()
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return []

    def _read_records(self) -> list[CommitRecord]:
        if not os.path.lexists(self.root):
            return []
        target = Folder.open(self.root)
        records = []
        with target:
            for _, name in self._run_folders(target):
                with target.sub(name) as run:
                    if run.kind(MARKER) is None:
                        continue  # not a commit (yet)
                    records.append(CommitRecord.parse(run.read(MARKER), f"{run.path}/{MARKER}", folder=name))
        return records

    def files_of(self, record: CommitRecord) -> list[str]:
        """Committed files are always in their run folder: the commit point moved them there."""
        return [join(self.root, record.folder, name, what="file name") for name in record.files]

    def slot_taken(self, seq: int) -> bool:
        """Whether a run folder of slot ``seq`` exists."""
        try:
            with Folder.open(self.root) as target:
                return any(taken == seq for taken, _ in self._run_folders(target))
        except FileNotFoundError:
            return False

    def _foreign(self, target: Folder) -> list[str]:
        """The entries of the folder that Dativo did not write (anything but ``_dativo`` and run folders)."""
        foreign = []
        for name in target.names():
            if name == CONTROL:
                continue
            if RUN_FOLDER.match(name) and target.kind(name) == "dir":
                with target.sub(name) as run:
                    if run.kind(MARKER) == "file":
                        continue
            foreign.append(name)
        return foreign

    def _foreign_message(self, foreign: list[str]) -> str:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return (f"{self.label}: {self.location} holds files Dativo did not write ({shown}); mode: overwrite "
                "replaces the whole folder, so it refuses")

    # --- writing ----------------------------------------------------------------------------------------

    def create(self, run_id: str, name: str) -> tuple[pa.NativeFile, str]:
        """Open a new staged file (creating the run's staging folder and taking its lease)."""
        name = check_data_file(name)
        folder = self._stage(run_id)
        try:
            fd = folder.create(name)
        except FileExistsError:  # this run's own staging: an earlier attempt at the same file
            os.unlink(name, dir_fd=folder.fd)
            fd = folder.create(name)
        uri = join(self.staging(run_id), name, what="file name")
        return pa.PythonFile(os.fdopen(fd, "wb"), mode="w"), uri

    def remove_staged(self, run_id: str, files: Iterable[str]) -> None:
        """Delete staged files of run ``run_id`` through its staging folder's descriptor."""
        names = [self.staged_name(run_id, file) for file in files]
        held = self._leases.get(run_id)
        for name in names if held is not None else ():
            try:
                os.unlink(name, dir_fd=held[0].fd)  # type: ignore[index]
            except FileNotFoundError:
                pass

    def staged(self, run_id: str) -> set[str]:
        """The data files in run ``run_id``'s staging folder."""
        with self._locked() as parent, \
                _folders(parent, self.name, CONTROL, "staging", create=True) as chain:
            assert chain is not None
            folder = self._claim(chain[-1], run_id)
            return {name for name in folder.names() if name not in (LEASE, MARKER)}

    def prepare(self, run_id: str, mode: str = "append") -> None:
        """Repair; check that an overwrite replaces only what Dativo owns; sweep dead staging; lease the run's.

        Raises:
            ConfigError: ``overwrite`` of a folder holding files Dativo did not write.
            OSError: The disk failed, or a link stands where a folder of the layout belongs.
        """
        with self._locked() as parent:
            if mode == "overwrite" and not os.access(parent.path, os.W_OK):
                raise Refused(errno.EACCES, "is not writable, and an overwrite replaces the folder in it",
                              parent.path)
            with parent.sub(self.name, create=True) as target:
                foreign = self._foreign(target) if mode == "overwrite" else []
                if foreign:
                    raise ConfigError(
                        self._foreign_message(foreign),
                        hint="Choose a new or empty folder, or move those files away; mode: append only adds "
                        "run folders.",
                    )
            with _folders(parent, self.name, CONTROL, "staging", create=True) as chain:
                assert chain is not None
                staging = chain[-1]
                for name in staging.names():
                    if name != run_id and name not in self._leases and self._dead(staging, name, own=False):
                        staging.remove(name)  # a folder, or a stray file or link (removed, never followed)
            self._stage(run_id)

    def serialised(self) -> AbstractContextManager[object]:
        """The target's lock: a commit holds it from reading the records to the end of the publication."""
        return self._locked()

    def apply(self, record: CommitRecord) -> None:
        """One ``rename`` of the staging folder (append) or one directory exchange (overwrite)."""
        try:
            with self._locked() as parent, \
                    _folders(parent, self.name, CONTROL, "staging", create=True) as chain:
                assert chain is not None
                target, _, staging = chain
                foreign = self._foreign(target) if record.mode == "overwrite" else []
                if foreign:
                    raise CommitFailed(self._foreign_message(foreign), hint=NOTHING_PUBLISHED)
                folder = self._claim(staging, record.staging)
                for name in folder.names():
                    if name not in record.files and name != LEASE:
                        folder.remove(name)
                folder.write(MARKER, json.dumps(record.to_json()).encode())
                if record.mode == "overwrite":
                    self._exchange(parent, target, staging, record)
                else:
                    staging.rename(record.staging, target, record.folder)  # the commit point
        except OSError as exc:
            raise self.commit_failed(exc, "publish the commit") from None
        finally:
            self._release(record.staging)
        self._tidy(record)

    def _exchange(self, parent: Folder, target: Folder, staging: Folder, record: CommitRecord) -> None:
        """Build the new folder beside the old one and swap them (see the module's *Overwrite*)."""
        temporary = f".{self.name}.dativo-{check_name(record.staging, 'run id')}"
        parent.remove(temporary)
        with parent.sub(temporary, create=True) as fresh:
            staging.rename(record.staging, fresh, record.folder)
            try:
                target.rename(CONTROL, fresh, CONTROL)
                try:
                    fresh.sync()
                    dirs.exchange(parent, temporary, self.name)  # the commit point
                except OSError:
                    fresh.rename(CONTROL, target, CONTROL)
                    raise
            except OSError:
                fresh.rename(record.folder, staging, record.staging)
                raise

    def _tidy(self, record: CommitRecord) -> None:
        """After the commit point: make it durable, drop the lease file, delete what an overwrite replaced."""
        try:
            with self._locked() as parent, _folders(parent, self.name, record.folder, create=False) as chain:
                if chain is not None:
                    chain[-1].remove(LEASE)
                    chain[0].sync()
                parent.sync()
                if record.mode == "overwrite":
                    parent.remove(f".{self.name}.dativo-{record.staging}")
        except OSError as exc:
            self.logger.warning("%s: commit %s is published; tidying up failed (the next run finishes): %s",
                                self.location, record.seq, self.explain(exc))

    def discard(self, run_id: str) -> None:
        """Delete the run's staging folder (if this store leases it, or no live run does)."""
        with self._guard:
            held = self._leases.get(run_id)
            try:
                with self._locked() as parent, \
                        _folders(parent, self.name, CONTROL, "staging", create=False) as chain:
                    if chain is None or chain[-1].kind(run_id) is None:
                        return
                    staging = chain[-1]
                    ours = held is not None and staging.is_folder(run_id, held[0])
                    if ours or (held is None and self._dead(staging, run_id, own=True)):
                        staging.remove(run_id)
            finally:
                self._release(run_id)

    def check(self, label: str | None = None) -> None:
        """The nearest existing folder on the way to the target must be writable."""
        probe = self.directory
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            raise ConnectionFailed(
                f"{label or self.location}: {probe} is a file, so no folder can be created below it",
                hint="Choose a target path whose folders are folders.",
            )
        if not os.access(probe, os.W_OK):
            raise ConnectionFailed(
                f"{label or self.location}: folder {probe} is not writable",
                hint="Choose a writable path or fix the folder's permissions.",
            )


__all__ = ["LOCK_TIMEOUT_S", "LocalStore", "target_problem"]
