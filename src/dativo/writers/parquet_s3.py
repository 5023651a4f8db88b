"""The ``parquet`` writer's S3 side: a commit log stands in for the ``rename`` object stores lack.

Layout under ``s3://bucket/prefix``::

    _dativo/staging/<run id>/part-*.parquet     written by the run, invisible to readers
    _dativo/log/00000000000000000007.json       commit 7: the run's record (files, mode, state …)
    000007-<run id>/part-*.parquet              the run's folder, filled just after its commit
    000007-<run id>/_dativo_commit.json         the same record, so the folder describes itself

**The commit point is the PUT of the log object**, which S3 makes visible whole or not at all. After it, the
staged files are copied (server side) into the run's folder and the staging is deleted; after an overwrite,
the folders of older runs are deleted. A kill in between leaves a committed run whose files are still
staged: :meth:`S3Target.live` serves them from the staging until the copy is done, and the next run's
:meth:`S3Target.prepare` finishes the job. A log entry that cannot be written leaves the staging, which
``abort`` (or the sweep of stale staging) removes.

One writer per target at a time: S3 offers no portable compare-and-swap, so two jobs committing to the same
prefix at the same moment could both take the same sequence number. The writer checks the slot is free right
before its PUT, which catches all but a race of milliseconds; targets shared by concurrent jobs belong in
an Iceberg table, whose catalog serialises commits.
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
from dativo.storage.s3 import S3Settings, redact, s3_filesystem
from dativo.writers.parquet import _BATCH, _STALE_STAGING_S, MARKER, Record, Target

_LOG_DIGITS = 20
log = logging.getLogger("dativo.writers.parquet")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _split(url: str) -> str:
    """``s3://bucket/prefix/`` → ``bucket/prefix`` (the file system's form of a path)."""
    return url.removeprefix("s3://").strip("/")


class S3Target(Target):
    """One dataset folder on S3, published through its commit log (see the module docstring)."""

    def __init__(self, url: str, settings: S3Settings, *, logger: logging.Logger | None = None) -> None:
        self.root = _split(url)
        self.location = f"s3://{self.root}"
        self.settings = settings
        self.fs = s3_filesystem(settings)
        self.logger = logger or log

    # -- paths ------------------------------------------------------------------------------------------

    def _staging(self, run_id: str) -> str:
        return f"{self.root}/_dativo/staging/{run_id}"

    def _log(self, seq: int) -> str:
        return f"{self.root}/_dativo/log/{seq:0{_LOG_DIGITS}d}.json"

    def staged_path(self, run_id: str, name: str) -> str:
        return f"{self._staging(run_id)}/{name}"

    def uri(self, path: str) -> str:
        return f"s3://{path}"

    def path(self, uri: str) -> str:
        return uri.removeprefix("s3://")

    # -- reading the log ---------------------------------------------------------------------------------

    def _listing(self, path: str, *, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=recursive)
        return [info for info in self.fs.get_file_info(selector) if info.type == pafs.FileType.File]

    def _read_json(self, path: str) -> Record:
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read())

    def records(self) -> list[Record]:
        found = []
        for info in self._listing(f"{self.root}/_dativo/log"):
            stem = info.base_name.removesuffix(".json")
            if stem.isdigit() and len(stem) == _LOG_DIGITS:
                found.append((int(stem), info.path))
        return [self._read_json(path) for _, path in sorted(found, reverse=True)]

    @staticmethod
    def _live_records(records: list[Record]) -> list[Record]:
        live = []
        for record in records:
            live.append(record)
            if record.get("mode") == "overwrite":
                break
        return live

    def live(self) -> list[tuple[Record, list[str]]]:
        result = []
        for record in self._live_records(self.records()):
            folder = f"{self.root}/{record['folder']}"
            copied = {info.base_name for info in self._listing(folder)}
            staging = self._staging(record.get("staging", record["run_id"]))
            files = [
                f"{folder}/{name}" if name in copied else f"{staging}/{name}" for name in record.get("files", [])
            ]
            result.append((record, files))
        return result

    # -- writing -------------------------------------------------------------------------------------------

    def prepare(self, run_id: str) -> None:
        """Finish the publication of committed runs, drop superseded folders and stale staging."""
        records = self.records()
        committed = {r.get("staging", r["run_id"]): r for r in records}
        staged: dict[str, list[pafs.FileInfo]] = defaultdict(list)
        for info in self._listing(f"{self.root}/_dativo/staging", recursive=True):
            staged[posixpath.basename(posixpath.dirname(info.path))].append(info)
        for staging_id, infos in staged.items():
            record = committed.get(staging_id)
            if record is not None:
                self._roll_forward(record, staging_id)
            elif staging_id != run_id and time.time() - _newest(infos) > _STALE_STAGING_S:
                self.discard(staging_id)
        self._drop_superseded(records)

    def publish(self, record: Record, staging_run_id: str) -> str:
        """Write the log entry (the commit), then move the files into the run's folder."""
        record = {**record, "staging": staging_run_id}
        entry = self._log(int(record["seq"]))
        try:
            staged = {info.base_name for info in self._listing(self._staging(staging_run_id))}
            missing = sorted(set(record["files"]) - staged)
            if missing:
                raise CommitFailed(
                    f"{self.location}: staged files are missing: {', '.join(missing[:5])}",
                    hint="Something deleted the run's staging; rerun the job. Nothing was published.",
                )
            if self.fs.get_file_info(entry).type != pafs.FileType.NotFound:
                raise CommitFailed(
                    f"{self.location}: commit {record['seq']} was taken by another run while this one ran",
                    hint="Run one job per parquet target at a time (or use an iceberg target); rerun the job.",
                )
        except OSError as exc:
            raise CommitFailed(
                f"{self.location}: cannot prepare the commit: {self._redact(exc)}",
                hint="Check the object store; nothing was published. Rerun the job.",
            ) from None
        try:
            with self.fs.open_output_stream(entry) as stream:
                stream.write(json.dumps(record).encode())
        except OSError as exc:
            self._settle(entry, record, exc)
        try:
            self._roll_forward(record, staging_run_id)
            if record["mode"] == "overwrite":
                self._drop_superseded(self.records())
        except OSError as exc:  # committed already: the next run finishes the publication
            self.logger.warning(
                "%s: run %s is committed but its files are still staged (%s); the next run moves them",
                self.location, record["run_id"], self._redact(exc),
            )
        return str(record["folder"])

    def _settle(self, entry: str, record: Record, exc: OSError) -> None:
        """After a failed PUT: find out whether the log entry landed anyway."""
        try:
            landed = self._read_json(entry).get("run_id") == record["run_id"]
        except FileNotFoundError:
            landed = False
        except OSError:
            raise CommitStateUnknown(
                f"{self.location}: writing commit {record['seq']} failed ({self._redact(exc)}) and its "
                "outcome cannot be read back",
                hint="Rerun the job with the same --run-id once the object store answers: a committed run is "
                "a no-op.",
            ) from None
        if not landed:
            raise CommitFailed(
                f"{self.location}: cannot write commit {record['seq']}: {self._redact(exc)}",
                hint="Check the object store and the credentials' write permission; nothing was published.",
            ) from None

    def _roll_forward(self, record: Record, staging_id: str) -> None:
        """Copy a committed run's staged files into its folder, write its marker, drop the staging."""
        folder = f"{self.root}/{record['folder']}"
        copied = {info.base_name for info in self._listing(folder)}
        for name in record.get("files", []):
            if name not in copied:
                try:
                    self.fs.copy_file(f"{self._staging(staging_id)}/{name}", f"{folder}/{name}")
                except FileNotFoundError:  # copied and cleaned up by an earlier attempt
                    pass
        if MARKER not in copied:
            with self.fs.open_output_stream(f"{folder}/{MARKER}") as stream:
                stream.write(json.dumps(record).encode())
        self.discard(staging_id)

    def _drop_superseded(self, records: list[Record]) -> None:
        """Delete the run folders that the newest overwrite replaced."""
        live = {r["folder"] for r in self._live_records(records)}
        if len(live) == len(records):
            return
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and _BATCH.match(info.base_name) and info.base_name not in live:
                self.fs.delete_dir_contents(info.path, missing_dir_ok=True)
                self._delete_quietly(info.path)

    def discard(self, run_id: str) -> None:
        self.fs.delete_dir_contents(self._staging(run_id), missing_dir_ok=True)
        self._delete_quietly(self._staging(run_id))

    def _delete_quietly(self, path: str) -> None:
        try:  # S3 "directories" are often only implied by their keys; there may be nothing to delete
            self.fs.delete_dir(path)
        except OSError:
            pass

    # -- errors ----------------------------------------------------------------------------------------

    def _redact(self, exc: BaseException) -> str:
        return redact(_first_line(exc), self.settings.secrets())

    def storage_error(self, exc: OSError, doing: str) -> Exception:
        return ConnectionFailed(
            f"{self.location} ({self.settings.describe()}): cannot {doing}: {self._redact(exc)}",
            hint="Check target.s3 (endpoint, credentials) and that the bucket exists.",
        )


def _newest(infos: list[pafs.FileInfo]) -> float:
    stamps = [info.mtime.timestamp() for info in infos if info.mtime is not None]
    return max(stamps, default=time.time())


def check_s3(url: str, settings: S3Settings) -> None:
    """The bucket of ``url`` must exist and the credentials must allow writing and deleting under it.

    Raises:
        ConnectionFailed: Naming the endpoint and what failed, never a credential.
    """
    target = S3Target(url, settings)
    bucket = target.root.split("/", 1)[0]
    try:
        info = target.fs.get_file_info(bucket)
    except OSError as exc:
        raise target.storage_error(exc, "reach the bucket") from None
    if info.type == pafs.FileType.NotFound:
        raise ConnectionFailed(
            f"{target.location} ({settings.describe()}): bucket {bucket!r} does not exist",
            hint="Create the bucket, or fix target.path.",
        )
    probe = f"{target.root}/_dativo/check-{uuid.uuid4().hex}"
    try:
        with target.fs.open_output_stream(probe) as stream:
            stream.write(b"dativo")
        target.fs.delete_file(probe)
    except OSError as exc:
        raise target.storage_error(exc, "write under the target") from None


__all__ = ["S3Target", "check_s3"]
