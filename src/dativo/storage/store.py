"""The commit protocol of file targets: staged files, one record per commit, numbered slots.

A :class:`Store` is one dataset's folder, on local disk (:class:`~dativo.storage.local.LocalStore`) or on
S3 (:class:`~dativo.storage.objectstore.S3Store`)::

    <folder>/
      _dativo/staging/<run id>/<file>            written by a run and not committed: invisible
      _dativo/log/00000000000000000007.json      S3 only: commit 7's record; its PUT is the commit point
      000007-<run id>/<file>                     the run folder of commit 7: its data files …
      000007-<run id>/_dativo_commit.json        … and its record (MARKER), so the folder describes itself

Readers that list the folder (pyarrow, DuckDB, Spark, pandas) skip names starting with ``_`` or ``.``, so
staged files and the bookkeeping are invisible to them. Readers that go through the records
(:meth:`Store.live`, :meth:`Store.committed_files`) see a run entirely or not at all.

One run, step by step:

1. :meth:`Store.prepare` finishes what interrupted runs left behind: it rolls forward a committed
   publication whose files are still staged (S3), puts back a folder an interrupted overwrite left half
   swapped and deletes what an overwrite replaced (local), and deletes the staging of runs that are provably
   dead: locally, those whose lease (an ``flock`` the live run holds on ``_dativo/staging/<run>/.lease``) it
   can take at once; staging without a lease (S3, or a writer that takes none) once it is older than
   :data:`STALE_STAGING_S`.
2. Files are written into the run's staging folder (:meth:`Store.create`, or
   :class:`~dativo.storage.sink.ParquetSink`, which deletes what it staged when its stream fails). Nothing is
   visible yet.
3. :meth:`Store.commit` (locally with the target's lock held, see :mod:`.local`):

   a. reads the records; one that carries the run id means the run is committed already, and the commit
      is a no-op (a rerun of a run is idempotent);
   b. takes the next slot, the newest record's ``seq`` + 1, and builds the run's :class:`CommitRecord`;
   c. checks that every file it names is in the run's staging and that the slot is still free; otherwise
      it raises ``CommitFailed``: nothing was published, and a retry takes the next free slot;
   d. makes the run visible in one atomic step, the **commit point**:

      - local ``append``: the staging folder, the record written into it, is renamed to the run folder;
      - local ``overwrite``: a new folder that holds only the run folder (and the ``_dativo`` folder, carried
        over with the staging of other runs) is swapped with the dataset's folder in one
        ``renameat2(RENAME_EXCHANGE)``; the old content is deleted afterwards;
      - S3: the PUT of the slot's log object (S3 has no rename). After it the run is **rolled forward**:
        its files are copied (server side) into the run folder, the marker is written, the staging is
        deleted and, after an overwrite, the folders of older runs. The commit returns once that is done; if
        the roll-forward keeps failing it raises ``CommitStateUnknown`` saying that the run *is* committed.
        A kill in between leaves a committed run whose files are still staged: :meth:`Store.live` serves
        them from there until the next :meth:`Store.prepare` finishes the copy.

4. :meth:`Store.abort` deletes the run's whole staging folder.

Every path the store deletes or publishes is built by :func:`dativo.names.join` from names it checked: run
ids, dataset names, the files a writer hands back and the names in records read from storage. A name that
could leave the folder is refused (``UnsafeName``), and so, locally, is a link where a folder of the layout
should be (:class:`~dativo.storage.dirs.LinkRefused`).

**Slots.** Locally, commits to one folder are serialised by the target's lock, so two commits never race
for a slot. S3 offers no portable compare-and-swap, so there the slot is checked right before the commit
point: a commit that finds its slot taken loses cleanly, publishing nothing and leaving the winner untouched.
A race within the milliseconds between that check and the PUT is not caught: run one writer per S3 target at
a time; targets shared by concurrent jobs belong in an Iceberg table, whose catalog serialises commits.

**Failures.** ``CommitFailed``: nothing was published. ``CommitStateUnknown``: the commit point may have
been passed (a failed PUT whose outcome cannot be read back), or was passed and the publication to listing
readers did not finish; rerun with the same run id, a committed run is a no-op and the rerun finishes it.
A full disk (``ENOSPC``, ``EDQUOT``, ``EFBIG``) is reported as such, with what to do.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.fs as pafs

from dativo.errors import CommitFailed, ConnectionFailed, DativoError
from dativo.names import UnsafeName, join, printable
from dativo.storage.dirs import LinkRefused, Refused
from dativo.storage.record import CommitRecord, check_data_file

STALE_STAGING_S = 3600
"""Staging of a run that never committed is deleted once its newest file is this old (seconds)."""

NOTHING_PUBLISHED = "Nothing was published; rerun the job."

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors that mean "no room": no space left, quota exceeded, file larger than the limit."""


def disk_full(exc: BaseException) -> str | None:
    """"the disk is full (…)" when ``exc`` is one of :data:`DISK_FULL`, else ``None``."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"the disk is full ({os.strerror(exc.errno)})"
    return None


def live_records(records: list[CommitRecord]) -> list[CommitRecord]:
    """The records whose files make up the dataset: back to the newest overwrite.

    Args:
        records: Records, newest first.
    """
    live = []
    for record in records:
        live.append(record)
        if record.mode == "overwrite":
            break
    return live


class Commit(NamedTuple):
    """What :meth:`Store.commit` did.

    Attributes:
        record: The run's record: the one just published, or the earlier one of the same run id.
        no_op: ``True`` when the run id was committed already and nothing new was published.
    """

    record: CommitRecord
    no_op: bool

    @property
    def commit_id(self) -> str:
        """The commit's id: its run folder's name."""
        return self.record.folder

    @property
    def rows(self) -> int:
        """Rows this commit published (0 for a no-op)."""
        return 0 if self.no_op else self.record.rows


class Store(ABC):
    """One dataset's folder: where a writer stages files and publishes them one commit at a time.

    Attributes:
        fs: The file system holding the folder (paths without a scheme).
        root: The folder's path in :attr:`fs`.
        location: The folder as a user writes it, for messages.
        logger: Where warnings go (a publication left for the next run to finish).
        label: How messages name the option that chose the folder (``target.path`` …).
    """

    fs: pafs.FileSystem
    root: str
    location: str
    logger: logging.Logger
    label: str = "path"
    local: bool = False
    """Whether :attr:`root` is a local folder (paths are then also checked against links)."""
    storage_hint = "Check the target folder and its permissions."
    """The advice of :meth:`storage_error`."""

    # --- paths ------------------------------------------------------------------------------------------

    def staging(self, run_id: str) -> str:
        """The path of the folder in which run ``run_id`` stages its files.

        Args:
            run_id: The run.

        Raises:
            UnsafeName: ``run_id`` could leave the folder.
        """
        return join(self.root, "_dativo", "staging", run_id, what="run id", local=self.local)

    def staged_name(self, run_id: str, file: str) -> str:
        """The base name of ``file``, which must be a data file in run ``run_id``'s staging.

        Args:
            run_id: The run.
            file: A URI as :meth:`create` returned it (or as a writer handed it back).

        Raises:
            UnsafeName: ``file`` is elsewhere, or its name could be anything but a data file of the run.
        """
        folder, name = posixpath.split(self.path(file))
        if folder != self.staging(run_id):
            message = f"{printable(file, 240)} is not in run {run_id}'s staging"
            raise UnsafeName(message, file, "outside the staging")
        return check_data_file(name)

    def uri(self, path: str) -> str:
        """How a path of :attr:`fs` is handed to others (a local path, or an ``s3://`` URL)."""
        return path

    def path(self, uri: str) -> str:
        """The inverse of :meth:`uri`."""
        return uri

    def create(self, run_id: str, name: str) -> tuple[pa.NativeFile, str]:
        """Open a new file ``name`` in the staging of run ``run_id``.

        Args:
            run_id: The run that writes the file.
            name: The file's base name.

        Returns:
            The output stream (the caller closes it) and the file's URI.

        Raises:
            UnsafeName: ``run_id`` or ``name`` could leave the folder.
        """
        path = join(self.staging(run_id), check_data_file(name), what="file name")
        return self.fs.open_output_stream(path), self.uri(path)

    def remove_staged(self, run_id: str, files: Iterable[str]) -> None:
        """Delete staged files of run ``run_id`` (a failed write's), leaving the rest of its staging.

        Args:
            run_id: The run.
            files: URIs as :meth:`create` returned them; missing ones are fine.

        Raises:
            UnsafeName: A file is not in the run's staging (nothing outside it is ever deleted).
        """
        for file in files:
            try:
                self.fs.delete_file(join(self.staging(run_id), self.staged_name(run_id, file)))
            except FileNotFoundError:
                pass

    def staged(self, run_id: str) -> set[str]:
        """The names of the data files in run ``run_id``'s staging.

        Raises:
            OSError: The storage failed.
        """
        return {info.base_name for info in self.list_files(self.staging(run_id))}

    def list_files(self, path: str, *, recursive: bool = False) -> list[pafs.FileInfo]:
        """The files under ``path`` (none if it does not exist).

        Args:
            path: A folder of :attr:`fs`.
            recursive: Descend into sub-folders.
        """
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=recursive)
        return [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]

    # --- reading ----------------------------------------------------------------------------------------

    @abstractmethod
    def records(self) -> list[CommitRecord]:
        """Every commit the folder knows, newest first.

        Raises:
            OSError: The storage failed.
        """

    @abstractmethod
    def files_of(self, record: CommitRecord) -> list[str]:
        """Where the files of committed ``record`` are now: its run folder, or still its staging.

        Args:
            record: A record of :meth:`records`.

        Returns:
            The paths (in :attr:`fs`) of its files, in the record's order.
        """

    def live(self) -> list[tuple[CommitRecord, list[str]]]:
        """The commits whose files make up the dataset now, newest first back to the last overwrite.

        Returns:
            Each live record with the paths of its files.
        """
        return [(record, self.files_of(record)) for record in live_records(self.records())]

    def committed_files(self) -> list[str]:
        """The paths of every committed file of the dataset, oldest run first."""
        return [file for _, files in reversed(self.live()) for file in files]

    # --- writing ----------------------------------------------------------------------------------------

    @abstractmethod
    def prepare(self, run_id: str, mode: str = "append") -> None:
        """Make the folder ready for run ``run_id``: step 1 of the protocol.

        Args:
            run_id: The run about to write; its own staging is never swept.
            mode: How the run will commit (``append`` or ``overwrite``).

        Raises:
            ConfigError: The folder must not be replaced (local ``overwrite`` of files Dativo did not write).
            ConnectionFailed: The folder cannot be created.
            OSError: The storage failed.
        """

    def commit(
        self,
        *,
        job: str,
        run_id: str,
        mode: str,
        files: Iterable[str],
        rows: int,
        staging: str | None = None,
        extra: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None = None,
        precondition: Callable[[list[CommitRecord]], str | None] | None = None,
    ) -> Commit:
        """Publish the staged ``files`` of a run as its next commit, unless the run is committed already.

        Args:
            job: The job's name.
            run_id: The run's id, the idempotency key.
            mode: ``append`` or ``overwrite``.
            files: URIs of the staged files to publish, as :meth:`create` returned them.
            rows: Rows in those files.
            staging: The run id whose staging holds the files (default: ``run_id``).
            extra: The writer's own fields of the record, or a function of the commit's slot number that
                returns them (e.g. to bind a sealed blob to its slot).
            precondition: Called with the commits as they are now (newest first, read under the target's
                lock); a message it returns refuses the commit. A writer makes its commit a compare-and-swap
                on the state it started from this way.

        Returns:
            The record, and whether the commit was a no-op.

        Raises:
            CommitFailed: Nothing was published (the records cannot be read, a file is not staged, the slot
                was taken).
            CommitStateUnknown: The commit point may have been passed.
        """
        staging = staging or run_id
        with ExitStack() as held:
            try:
                held.enter_context(self.serialised())
            except OSError as exc:
                raise self.commit_failed(exc, "take the target's lock") from None
            try:
                records = self.records()
            except (OSError, UnsafeName) as exc:
                raise self.commit_failed(exc, "read the commits") from None
            for record in records:
                if record.run_id == run_id:
                    return Commit(record, no_op=True)
            problem = precondition(records) if precondition is not None else None
            if problem:
                raise CommitFailed(f"{self.location}: {problem}", hint=NOTHING_PUBLISHED)
            try:
                names = {self.staged_name(staging, file) for file in files}
            except UnsafeName as exc:
                raise CommitFailed(f"{self.location}: refused to publish: {exc}",
                                   hint=f"A writer may only commit files it staged. {NOTHING_PUBLISHED}") from None
            seq = records[0].seq + 1 if records else 1
            record = CommitRecord(
                job=job,
                run_id=run_id,
                seq=seq,
                mode=mode,
                files=tuple(sorted(names)),
                rows=rows,
                committed_at=time.time(),
                staging=staging,
                extra=dict(extra(seq) if callable(extra) else extra or {}),
            )
            self.publish(record)
            return Commit(record, no_op=False)

    def serialised(self) -> AbstractContextManager[object]:
        """What :meth:`commit` holds from reading the records to the end of the publication: nothing here;
        a local store's lock (see :mod:`.local`).

        Raises:
            OSError: It cannot be had (a local store's lock stays taken).
        """
        return nullcontext()

    def publish(self, record: CommitRecord) -> None:
        """Publish a record built for a free slot: steps 3c and 3d of the protocol.

        Args:
            record: The run's record; its files are in the staging of ``record.staging``.

        Raises:
            CommitFailed: Nothing was published.
            CommitStateUnknown: The commit point may have been passed.
        """
        try:
            staged = self.staged(record.staging)
            taken = self.slot_taken(record.seq)
        except (OSError, UnsafeName) as exc:
            raise self.commit_failed(exc, "prepare the commit") from None
        missing = sorted(set(record.files) - staged)
        if missing:
            raise CommitFailed(
                f"{self.location}: staged files are missing: {', '.join(missing[:5])}",
                hint="Something deleted the run's staging; rerun the job. Nothing was published.",
            )
        if taken:
            raise CommitFailed(
                f"{self.location}: commit {record.seq} was taken by another run while this one ran",
                hint="Run one job per target at a time (or use an iceberg target); rerun the job.",
            )
        self.apply(record)

    @abstractmethod
    def slot_taken(self, seq: int) -> bool:
        """Whether commit slot ``seq`` holds a record.

        Args:
            seq: The slot number.

        Raises:
            OSError: The storage failed.
        """

    @abstractmethod
    def apply(self, record: CommitRecord) -> None:
        """Pass the commit point of a checked ``record`` (step 3d), then what follows it.

        Args:
            record: A record :meth:`publish` checked: its slot was free and its files are staged.

        Raises:
            CommitFailed: Nothing was published.
            CommitStateUnknown: The commit point may have been passed.
        """

    @abstractmethod
    def discard(self, run_id: str) -> None:
        """Delete everything staged by run ``run_id``: its whole staging folder.

        Args:
            run_id: The run.
        """

    def abort(self, run_id: str, files: Iterable[str]) -> None:
        """Delete run ``run_id``'s whole staging folder, which holds every file the run staged.

        Args:
            run_id: The run whose staging goes.
            files: URIs of files the run staged, as :meth:`create` returned them (a writer hands them back);
                each must be in the run's staging: nothing outside it is ever deleted.

        Raises:
            UnsafeName: A file named is not in the run's staging (the staging is deleted all the same).
        """
        refused = []
        for file in files:
            try:
                self.staged_name(run_id, file)
            except UnsafeName as exc:
                refused.append(exc)
        self.discard(run_id)
        if refused:
            raise UnsafeName(f"{self.location}: refused to delete {refused[0]}; a writer may only hand back "
                             "files it staged", refused[0].value, refused[0].problem)

    def close(self) -> None:
        """Release what the store holds for its runs (the leases of a local store). Idempotent."""

    # --- checks and errors -----------------------------------------------------------------------------

    @abstractmethod
    def check(self, label: str | None = None) -> None:
        """Check that the folder can be written, without writing data.

        Args:
            label: How messages name the folder (default: :attr:`location`).

        Raises:
            ConnectionFailed: Naming what failed.
        """

    def describe(self) -> str:
        """How messages name the folder and the storage it is on."""
        return self.location

    def explain(self, exc: BaseException) -> str:
        """The first line of a storage error, safe to show ("the disk is full" for a full disk).

        Args:
            exc: What the storage raised.
        """
        if (full := disk_full(exc)) is not None:
            return full
        if isinstance(exc, Refused):
            return str(exc)
        text = str(exc).strip() or type(exc).__name__
        return text.splitlines()[0]

    def advice(self, exc: BaseException) -> str:
        """What to do about a storage error (the hint of :meth:`storage_error`).

        Args:
            exc: What the storage raised.
        """
        if disk_full(exc) is not None:
            return (f"Free space on the disk that holds {self.location} (or raise the quota or the file-size "
                    "limit), then rerun the job. What this run staged is deleted, at the latest when the next "
                    "run starts.")
        if isinstance(exc, LinkRefused):
            return ("Dativo never follows a link inside a target (a failed plugin may have planted it): "
                    "remove the link, then rerun the job.")
        if isinstance(exc, UnsafeName):
            return ("Dativo writes and deletes only inside the target: fix what supplied that name (a plugin's "
                    "return value, or a record something else wrote into the target).")
        return self.storage_hint

    def commit_failed(self, exc: OSError | UnsafeName, doing: str) -> CommitFailed:
        """:meth:`storage_error` as the ``CommitFailed`` of a commit that published nothing.

        Args:
            exc: What the storage raised (or the name it refused).
            doing: What failed, as in "cannot <doing>".
        """
        error = self.storage_error(exc, doing)
        return CommitFailed(error.message, hint=f"{error.hint} {NOTHING_PUBLISHED}")

    def storage_error(self, exc: OSError | UnsafeName, doing: str) -> DativoError:
        """The error to raise when the storage fails while ``doing`` something.

        Args:
            exc: What the storage raised (or the name it refused).
            doing: What failed, as in "cannot <doing>".

        Returns:
            A ``ConnectionFailed`` naming the folder (and endpoint), never a credential.
        """
        message = f"{self.describe()}: cannot {doing}: {self.explain(exc)}"
        return ConnectionFailed(message, hint=self.advice(exc))

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn an ``OSError`` (or a refused name) raised inside the block into :meth:`storage_error`.

        Args:
            doing: What the block does, for the message.
        """
        try:
            yield
        except (OSError, UnsafeName) as exc:
            raise self.storage_error(exc, doing) from None


__all__ = ["DISK_FULL", "NOTHING_PUBLISHED", "disk_full", "STALE_STAGING_S", "Commit", "Store", "live_records"]
