"""A store on S3: a commit log stands in for the ``rename`` object stores lack.

Commit ``n`` is the log object ``_dativo/log/<n, 20 digits>.json`` holding the run's record; its PUT is the
commit point, and S3 makes an object visible whole or not at all. The run is then rolled forward (files
copied into the run folder, marker written, staging deleted, and after an overwrite the older run folders
deleted); see :mod:`dativo.storage.store` for the whole protocol and what a kill at each moment leaves.

The commit returns only once the roll-forward is done, retrying it :data:`SETTLE_ATTEMPTS` times. What a
reader that *lists* the prefix sees is therefore exact once the commit has returned, but not while it runs:
S3 has no rename, so the run's files appear in its folder one copy at a time, and after an overwrite the
older folders disappear one object at a time. A commit whose roll-forward keeps failing (the object store
went away after the PUT) raises ``CommitStateUnknown`` saying that the run *is* committed; so does a kill,
silently. Until the next run on the target (or a rerun with the same run id) finishes the roll-forward, a
listing reader sees part of the run (append) or the old data and part of the new (overwrite). Readers of the
records (:meth:`Store.live`, ``read_committed``) always see every committed run whole.
"""

from __future__ import annotations

import json
import logging
import posixpath
import time
import uuid
from collections import defaultdict

import pyarrow.fs as pafs

from dativo.errors import CommitFailed, CommitStateUnknown, ConnectionFailed
from dativo.names import UnsafeName, join
from dativo.storage.dirs import Refused
from dativo.storage.record import MARKER, RUN_FOLDER, CommitRecord
from dativo.storage.s3 import S3Settings, redact, s3_filesystem
from dativo.storage.store import STALE_STAGING_S, Store, live_records

LOG_DIGITS = 20
"""Digits of a log object's number: names sort in commit order."""

SETTLE_ATTEMPTS = 3
"""How often a commit tries to roll its run forward before it reports the publication unfinished."""
SETTLE_BACKOFF_S = 0.5
"""Pause before the second attempt; it doubles for each further one."""

log = logging.getLogger("dativo.storage")


class S3Store(Store):
    """A dataset's folder under ``s3://bucket/prefix``, published through its commit log.

    Args:
        url: ``s3://bucket/prefix`` (no ``{dataset}`` placeholder).
        settings: Endpoint and credentials.
        logger: Where warnings go.
        label: How messages name the option that chose the prefix.
    """

    storage_hint = "Check the S3 settings (endpoint, credentials) and that the bucket exists."

    def __init__(
        self, url: str, settings: S3Settings, *, logger: logging.Logger | None = None, label: str = "path"
    ) -> None:
        self.root = url.removeprefix("s3://").strip("/")
        self.location = f"s3://{self.root}"
        self.settings = settings
        self.fs = s3_filesystem(settings)
        self.logger = logger or log
        self.label = label

    def uri(self, path: str) -> str:
        """``bucket/key`` → ``s3://bucket/key``."""
        return f"s3://{path}"

    def path(self, uri: str) -> str:
        """``s3://bucket/key`` → ``bucket/key``."""
        return uri.removeprefix("s3://")

    def log_entry(self, seq: int) -> str:
        """The path of commit ``seq``'s log object.

        Args:
            seq: The slot number.
        """
        return f"{self.root}/_dativo/log/{seq:0{LOG_DIGITS}d}.json"

    # --- reading ----------------------------------------------------------------------------------------

    def _read(self, path: str) -> CommitRecord:
        with self.fs.open_input_stream(path) as stream:
            return CommitRecord.parse(stream.read(), path)

    def records(self) -> list[CommitRecord]:
        """The log's records, newest first."""
        found = []
        for info in self.list_files(f"{self.root}/_dativo/log"):
            stem = info.base_name.removesuffix(".json")
            if info.base_name.endswith(".json") and stem.isdigit() and len(stem) == LOG_DIGITS:
                found.append((int(stem), info.path))
        newest_first = sorted(found, reverse=True)
        return [self._read(path) for _, path in newest_first]

    def files_of(self, record: CommitRecord) -> list[str]:
        """Files already copied are read from the run folder, the others from the run's staging."""
        folder = join(self.root, record.folder)
        copied = {info.base_name for info in self.list_files(folder)}
        staging = self.staging(record.staging)
        return [join(folder if name in copied else staging, name, what="file name") for name in record.files]

    def slot_taken(self, seq: int) -> bool:
        """Whether log object ``seq`` exists."""
        return self.fs.get_file_info(self.log_entry(seq)).type != pafs.FileType.NotFound

    # --- writing ----------------------------------------------------------------------------------------

    def prepare(self, run_id: str, mode: str = "append") -> None:
        """Roll committed runs forward, drop folders an overwrite replaced, delete stale staging."""
        records = self.records()
        committed = {record.staging: record for record in records}
        staged: dict[str, list[pafs.FileInfo]] = defaultdict(list)
        staging_root = join(self.root, "_dativo", "staging")
        for info in self.list_files(staging_root, recursive=True):
            folder = posixpath.dirname(info.path)
            if posixpath.dirname(folder) == staging_root:
                staged[posixpath.basename(folder)].append(info)
        for staging_id, infos in staged.items():
            record = committed.get(staging_id)
            if record is not None:
                self.roll_forward(record)
            elif staging_id != run_id and time.time() - _newest(infos) > STALE_STAGING_S:
                self.discard(staging_id)
        self.drop_superseded(records)

    def apply(self, record: CommitRecord) -> None:
        """PUT the log object (the commit point), then roll the run forward (:meth:`settle`)."""
        entry = self.log_entry(record.seq)
        try:
            with self.fs.open_output_stream(entry) as stream:
                stream.write(json.dumps(record.to_json()).encode())
        except OSError as exc:
            self._landed(entry, record, exc)
        self.settle(record)

    def settle(self, record: CommitRecord) -> None:
        """Roll committed ``record`` forward and, after an overwrite, drop the older run folders; retried.

        Args:
            record: A record whose log object is written.

        Raises:
            CommitStateUnknown: It still failed after :data:`SETTLE_ATTEMPTS` attempts. The run is committed
                (readers of the log see it whole); a reader listing the prefix sees part of it until a rerun
                with the same run id, or any later run on the target, finishes the roll-forward.
        """
        problem = ""
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                self.roll_forward(record)
                if record.mode == "overwrite":
                    self.drop_superseded(self.records())
                return
            except OSError as exc:
                problem = self.explain(exc)
                if attempt + 1 < SETTLE_ATTEMPTS:
                    time.sleep(SETTLE_BACKOFF_S * 2**attempt)
        seen = "at most part of it" if record.mode == "append" else "the replaced data and at most part of the new"
        raise CommitStateUnknown(
            f"{self.location}: run {record.run_id} is committed (commit {record.seq} of the log; "
            "read_committed and every reader of the log see all of it), but its files could not be moved "
            f"into {record.folder}: {problem}. Until they are, a reader that lists the prefix sees {seen}",
            hint=f"Rerun the job with --run-id {record.run_id} once the object store answers: the commit "
            "is a no-op and the rerun finishes the move (so does any later run on this target).",
        )

    def _landed(self, entry: str, record: CommitRecord, exc: OSError) -> None:
        """After a failed PUT: find out whether the log object landed anyway."""
        try:
            landed = self._read(entry).run_id == record.run_id
        except (FileNotFoundError, Refused, UnsafeName):  # nothing there, or not our record
            landed = False
        except OSError:
            raise CommitStateUnknown(
                f"{self.location}: writing commit {record.seq} failed ({self.explain(exc)}) and its "
                "outcome cannot be read back",
                hint="Rerun the job with the same --run-id once the object store answers: a committed run is "
                "a no-op.",
            ) from None
        if not landed:
            raise CommitFailed(
                f"{self.location}: cannot write commit {record.seq}: {self.explain(exc)}",
                hint="Check the object store and the credentials' write permission; nothing was published.",
            ) from None

    def roll_forward(self, record: CommitRecord) -> None:
        """Copy a committed run's staged files into its folder, write its marker, drop its staging.

        Idempotent: what an earlier attempt copied is not copied again. Once the files are copied, a listing
        reader sees the run whole; a failure after that (the marker, deleting the staging) is only logged,
        and the next :meth:`prepare` finishes it.

        Args:
            record: A committed record.

        Raises:
            OSError: A copy failed; the run stays committed, and a later call finishes it.
        """
        folder = join(self.root, record.folder)
        staging = self.staging(record.staging)
        copied = {info.base_name for info in self.list_files(folder)}
        for name in record.files:
            if name not in copied:
                try:
                    source = join(staging, name, what="file name")
                    self.fs.copy_file(source, join(folder, name, what="file name"))
                except FileNotFoundError:  # copied and cleaned up by an earlier attempt
                    pass
        try:
            if MARKER not in copied:
                with self.fs.open_output_stream(join(folder, MARKER)) as stream:
                    stream.write(json.dumps(record.to_json()).encode())
            self.discard(record.staging)
        except OSError as exc:
            self.logger.warning("%s: run %s is published; tidying its staging failed (the next run does): %s",
                                self.location, record.run_id, self.explain(exc))

    def drop_superseded(self, records: list[CommitRecord]) -> None:
        """Delete the run folders that the newest overwrite in ``records`` replaced.

        Args:
            records: Every record, newest first.
        """
        live = {record.folder for record in live_records(records)}
        if len(live) == len(records):
            return
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            superseded = RUN_FOLDER.match(info.base_name) and info.base_name not in live
            if info.type == pafs.FileType.Directory and superseded:
                folder = join(self.root, info.base_name)
                self.fs.delete_dir_contents(folder, missing_dir_ok=True)
                self._delete_quietly(folder)

    def discard(self, run_id: str) -> None:
        """Delete the run's staged objects."""
        staging = self.staging(run_id)
        self.fs.delete_dir_contents(staging, missing_dir_ok=True)
        self._delete_quietly(staging)

    def _delete_quietly(self, path: str) -> None:
        try:  # S3 "directories" are often only implied by their keys; there may be nothing to delete
            self.fs.delete_dir(path)
        except OSError:
            pass

    # --- checks and errors -----------------------------------------------------------------------------

    def check(self, label: str | None = None) -> None:
        """The bucket must exist, and the credentials must allow writing and deleting under the prefix."""
        bucket = self.root.split("/", 1)[0]
        with self.errors("reach the bucket"):
            info = self.fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise ConnectionFailed(
                f"{label or self.location} ({self.settings.describe()}): bucket {bucket!r} does not exist",
                hint="Create the bucket, or fix the path.",
            )
        probe = f"{self.root}/_dativo/check-{uuid.uuid4().hex}"
        with self.errors("write under the target"):
            with self.fs.open_output_stream(probe) as stream:
                stream.write(b"dativo")
            self.fs.delete_file(probe)

    def describe(self) -> str:
        """The folder, endpoint and region (never a credential)."""
        return f"{self.location} ({self.settings.describe()})"

    def explain(self, exc: BaseException) -> str:
        """The first line of a storage error, with every credential scrubbed."""
        return redact(super().explain(exc), self.settings.secrets())


def _newest(infos: list[pafs.FileInfo]) -> float:
    stamps = [info.mtime.timestamp() for info in infos if info.mtime is not None]
    return max(stamps, default=time.time())


__all__ = ["LOG_DIGITS", "SETTLE_ATTEMPTS", "S3Store"]
