"""Where encrypted files live, and the plugin's own small commit protocol (local folder or S3).

Layout of one dataset's target ``<path>`` (a local folder or ``s3://bucket/prefix``)::

    _staging/<run id>/part-<split>-<n>-<nonce>.parquet   written by a run, invisible to readers
    _dativo/log/00000000000000000007.json                commit 7: names the run's files (the commit point)
    000007-<run id>/part-….parquet                       the run's folder, filled right after its commit

The commit point is the creation of one log object: one PUT on S3 (visible whole or not at all), a
``rename`` of a fully written temporary file locally. After it the staged files move into the run's folder;
a kill in between leaves a committed run whose files are still staged: readers going through the log
(:func:`dativo_hsm.read_encrypted`) find them there, and the next run finishes the move. Readers that list
the folder skip ``_``-prefixed names, so they never see a run that did not commit.

One writer per target at a time: S3 has no portable compare-and-swap; the slot is checked just before the
PUT, which catches all but a race of milliseconds.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

_DIGITS = 20
STALE_STAGING_S = 3600

Record = dict[str, Any]
"""One commit: ``format``, ``job``, ``run_id``, ``seq``, ``folder``, ``mode``, ``rows``, ``files``,
``committed_at`` in clear, and ``sealed`` (state and schema, AES-GCM-encrypted by the HSM)."""


class S3Options(BaseModel):
    """How to reach an S3-compatible object store (AWS S3, SeaweedFS, MinIO …)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(None, description="e.g. http://127.0.0.1:8333; omit for AWS S3.")
    region: str = Field("us-east-1", description="Signing region.")
    access_key_id: SecretStr | None = Field(None, description="Omit to use the AWS default credential chain.")
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    path_style: bool = Field(False, description="Address buckets as endpoint/bucket (self-hosted servers).")

    def filesystem(self) -> pafs.S3FileSystem:
        """A ``pyarrow.fs.S3FileSystem`` for these settings."""
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint:
            scheme, _, host = self.endpoint.rpartition("://")
            kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https")
        else:
            kwargs["force_virtual_addressing"] = not self.path_style
        if self.access_key_id is not None:
            kwargs["access_key"] = self.access_key_id.get_secret_value()
            kwargs["secret_key"] = self.secret_access_key.get_secret_value() if self.secret_access_key else ""
            if self.session_token is not None:
                kwargs["session_token"] = self.session_token.get_secret_value()
        return pafs.S3FileSystem(**kwargs)


class Location(BaseModel):
    """A target path and, for ``s3://`` paths, how to reach the store."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="Local folder or s3://bucket/prefix; `{dataset}` is replaced by the dataset name."
    )
    s3: S3Options | None = Field(None, description="Endpoint and credentials of an s3:// path.")

    @model_validator(mode="after")
    def _storage_fits_path(self) -> Location:
        if "://" in self.path and not self.path.startswith(("s3://", "file://")):
            raise ValueError(f"path {self.path!r}: expected a local folder, file:// or s3://bucket/prefix")
        if self.path.startswith("s3://") and not self.path[5:].split("/", 1)[0]:
            raise ValueError(f"path {self.path!r} names no bucket")
        if self.s3 is not None and not self.path.startswith("s3://"):
            raise ValueError("s3 settings need an s3:// path")
        return self


class Store:
    """One dataset's folder: staging, commit log, run folders.

    Args:
        path: The dataset's folder (no ``{dataset}`` placeholder left).
        s3: Endpoint and credentials when ``path`` is ``s3://…``.
    """

    def __init__(self, path: str, s3: S3Options | None = None) -> None:
        if path.startswith("s3://"):
            self.fs: pafs.FileSystem = (s3 or S3Options()).filesystem()
            self.root = path[5:].strip("/")
            self.location = f"s3://{self.root}"
            self.remote = True
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = os.path.abspath(os.path.expanduser(path.removeprefix("file://")))
            self.location = self.root
            self.remote = False

    # --- paths ---------------------------------------------------------------------------------------

    def staging(self, run_id: str) -> str:
        """The folder a run stages its files in."""
        return f"{self.root}/_staging/{run_id}"

    def _log(self, seq: int) -> str:
        return f"{self.root}/_dativo/log/{seq:0{_DIGITS}d}.json"

    def new_file(self, run_id: str, split: str, n: int, nonce: str) -> str:
        """Path of a new staged data file (the nonce keeps reruns of one run id from clobbering)."""
        if not self.remote:
            self.fs.create_dir(self.staging(run_id), recursive=True)
        return f"{self.staging(run_id)}/part-{split}-{n:05d}-{nonce}.parquet"

    def _files(self, path: str, *, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(path, allow_not_found=True, recursive=recursive)
        return [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]

    # --- the log -------------------------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every commit, newest first."""
        found = []
        for info in self._files(f"{self.root}/_dativo/log"):
            stem = info.base_name.removesuffix(".json")
            if info.base_name.endswith(".json") and stem.isdigit() and len(stem) == _DIGITS:
                found.append((int(stem), info.path))
        records = []
        for _, path in sorted(found, reverse=True):
            with self.fs.open_input_stream(path) as stream:
                records.append(json.loads(stream.read()))
        return records

    @staticmethod
    def live(records: list[Record]) -> list[Record]:
        """The commits whose files make up the dataset now (newest back to the last overwrite)."""
        live = []
        for record in records:
            live.append(record)
            if record.get("mode") == "overwrite":
                break
        return live

    def files_of(self, record: Record) -> Iterator[str]:
        """A committed run's files: in its folder, or still in its staging if the move was interrupted."""
        folder = f"{self.root}/{record['folder']}"
        moved = {i.base_name for i in self._files(folder)}
        for name in record.get("files", []):
            yield f"{folder}/{name}" if name in moved else f"{self.staging(record['run_id'])}/{name}"

    def append_log(self, record: Record) -> None:
        """Create log object ``record['seq']``: the commit point.

        Raises:
            FileExistsError: The slot was taken by another run.
            OSError: The store failed (the object may or may not exist; see :meth:`landed`).
        """
        entry = self._log(int(record["seq"]))
        if self.fs.get_file_info(entry).type != pafs.FileType.NotFound:
            raise FileExistsError(entry)
        data = json.dumps(record, sort_keys=True).encode()
        if self.remote:
            with self.fs.open_output_stream(entry) as stream:
                stream.write(data)
            return
        self.fs.create_dir(posixpath.dirname(entry), recursive=True)
        temporary = f"{posixpath.dirname(entry)}/.tmp-{uuid.uuid4().hex}"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, entry)  # atomic: readers see no entry or the whole one

    def landed(self, record: Record) -> bool:
        """Whether log object ``record['seq']`` exists and belongs to ``record``'s run."""
        try:
            with self.fs.open_input_stream(self._log(int(record["seq"]))) as stream:
                return json.loads(stream.read()).get("run_id") == record["run_id"]
        except FileNotFoundError:
            return False

    # --- after the commit ----------------------------------------------------------------------------

    def roll_forward(self, record: Record) -> None:
        """Move a committed run's staged files into its folder (idempotent)."""
        folder = f"{self.root}/{record['folder']}"
        staging = self.staging(record["run_id"])
        moved = {i.base_name for i in self._files(folder)}
        if not self.remote:
            self.fs.create_dir(folder, recursive=True)
        for name in record.get("files", []):
            if name in moved:
                continue
            try:
                if self.remote:  # object stores cannot rename: server-side copy, then delete
                    self.fs.copy_file(f"{staging}/{name}", f"{folder}/{name}")
                    self.fs.delete_file(f"{staging}/{name}")
                else:
                    self.fs.move(f"{staging}/{name}", f"{folder}/{name}")
            except FileNotFoundError:  # moved by an earlier attempt
                pass
        if not self.remote:
            _remove_empty(staging)

    def drop_superseded(self, records: list[Record]) -> None:
        """Delete the folders of runs an overwrite replaced."""
        live = {r["folder"] for r in self.live(records)}
        for record in records:
            if record["folder"] not in live:
                self.fs.delete_dir_contents(f"{self.root}/{record['folder']}", missing_dir_ok=True)
                if not self.remote:
                    self.fs.delete_dir(f"{self.root}/{record['folder']}")

    def tidy(self, run_id: str, records: list[Record]) -> None:
        """Finish interrupted publications; delete old staging of runs that never committed."""
        committed = {r["run_id"]: r for r in records}
        by_run: dict[str, list[pafs.FileInfo]] = {}
        for info in self._files(f"{self.root}/_staging", recursive=True):
            by_run.setdefault(posixpath.basename(posixpath.dirname(info.path)), []).append(info)
        for staged_run, infos in by_run.items():
            record = committed.get(staged_run)
            if record is not None:
                self.roll_forward(record)
            elif staged_run != run_id and time.time() - max(_mtime(i) for i in infos) > STALE_STAGING_S:
                for info in infos:
                    self.fs.delete_file(info.path)

    def delete(self, paths: list[str]) -> None:
        """Delete staged files (missing ones are fine)."""
        for path in paths:
            try:
                self.fs.delete_file(path)
            except FileNotFoundError:
                pass
        if not self.remote:
            for folder in {posixpath.dirname(p) for p in paths}:
                _remove_empty(folder)


def _remove_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty (another attempt's files) or already gone
        pass


def _mtime(info: pafs.FileInfo) -> float:
    return info.mtime.timestamp() if info.mtime is not None else 0.0


__all__ = ["Location", "Record", "S3Options", "Store"]
