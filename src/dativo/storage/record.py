"""What one commit says, and the names it gives a run's folder (the protocol is in :mod:`.store`)."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dativo.names import UnsafeName, check_name, printable
from dativo.storage.dirs import Refused

MARKER = "_dativo_commit.json"
"""The record's copy inside its run folder, so that the folder describes itself."""

LEASE = ".lease"
"""The file in a run's staging folder whose lock the live run holds (local stores; see :mod:`.local`)."""

RUN_FOLDER = re.compile(r"^(\d{6,})-([0-9A-Za-z_\-]+)$")
"""A run folder's name: the commit's slot number (six digits or more), a dash, the run id."""

FORMAT = 1
"""Version of the record's JSON form."""

_CORE = ("format", "job", "run_id", "seq", "folder", "mode", "rows", "files", "committed_at", "staging")


@dataclass(frozen=True)
class CommitRecord:
    """One commit of one run: the files it publishes, and what the writer keeps beside them.

    Attributes:
        job: The job that committed.
        run_id: The run that committed; a second commit of the same run id is a no-op.
        seq: The commit's slot: 1, 2, 3 … in commit order; two commits never share one.
        mode: ``append`` adds the run's files to the live ones; ``overwrite`` replaces them all.
        files: Base names of the run's data files.
        rows: Rows in those files.
        committed_at: Unix time of the commit.
        staging: The run id whose staging folder held the files (default: ``run_id``).
        folder: The run folder's name (default: ``<seq, 6 digits>-<run id>``); also the commit's id.
        extra: The writer's own JSON-serialisable fields, stored at the top level of the record's JSON
            (the ``parquet`` writer: ``schema`` and ``state``; an encrypting writer: a sealed blob).
    """

    job: str
    run_id: str
    seq: int
    mode: str = "append"
    files: tuple[str, ...] = ()
    rows: int = 0
    committed_at: float = 0.0
    staging: str = ""
    folder: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", tuple(self.files))
        if not self.staging:
            object.__setattr__(self, "staging", self.run_id)
        if not self.folder:
            object.__setattr__(self, "folder", f"{self.seq:06d}-{self.run_id}")

    def check(self) -> CommitRecord:
        """This record, if every name in it is safe to join to the dataset's folder.

        A record is read back from storage that others can write, so it is checked before any of its names
        becomes a path: run id, staging, folder and files must be plain names
        (:func:`dativo.names.check_name`), and no file may pose as the record itself.

        Raises:
            UnsafeName: Naming the commit and the refused name.
        """
        try:
            for value, what in ((self.run_id, "run id"), (self.staging, "staging"), (self.folder, "folder")):
                check_name(value, what)
            for name in self.files:
                check_data_file(name)
        except UnsafeName as exc:
            where = f"commit {self.seq} ({printable(self.folder)})"
            raise UnsafeName(f"{where}: {exc}", exc.value, exc.problem) from None
        return self

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object: the fields above, with ``extra`` merged in at the top level."""
        core = {
            "format": FORMAT,
            "job": self.job,
            "run_id": self.run_id,
            "seq": self.seq,
            "folder": self.folder,
            "mode": self.mode,
            "rows": self.rows,
            "files": list(self.files),
            "committed_at": self.committed_at,
            "staging": self.staging,
        }
        return {**self.extra, **core}

    @classmethod
    def parse(cls, text: bytes | str, path: str, *, folder: str | None = None) -> CommitRecord:
        """A record read back from the bytes of its file at ``path`` (for messages), checked.

        Raises:
            Refused: The file is not a commit record: not JSON, not an object (a file planted in the target,
                or a broken one), or a record whose fields are wrong.
        """
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            data = None
        if not isinstance(data, dict):
            raise Refused(errno.EINVAL, "is not a commit record", path)
        return cls.from_json(data, folder=folder).check()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, folder: str | None = None) -> CommitRecord:
        """Read a record back from its JSON object.

        Args:
            data: What :meth:`to_json` wrote (older or foreign records may lack some fields).
            folder: The run folder the record was found in; its name gives the slot, and the run id when
                the record names none.

        Returns:
            The record; keys it does not know go into :attr:`extra`.
        """
        seq, run_id = data.get("seq"), data.get("run_id")
        if folder is not None:
            match = RUN_FOLDER.match(folder)
            if match:
                seq, run_id = int(match[1]), run_id or match[2]
        return cls(
            job=str(data.get("job", "")),
            run_id=str(run_id),
            seq=int(seq or 0),
            mode=str(data.get("mode", "append")),
            files=tuple(data.get("files", ())),
            rows=int(data.get("rows", 0)),
            committed_at=float(data.get("committed_at", 0.0)),
            staging=str(data.get("staging") or ""),
            folder=folder or str(data.get("folder") or ""),
            extra={k: v for k, v in data.items() if k not in _CORE},
        )


def check_data_file(name: object) -> str:
    """``name`` if it may name a data file of a run: a safe name that is not one of Dativo's own files.

    Raises:
        UnsafeName: It is not.
    """
    checked = check_name(name, "file name")
    if checked in (MARKER, LEASE):
        message = f"the file name {printable(name)} is refused because it is Dativo's own"
        raise UnsafeName(message, name, "reserved")
    return checked


__all__ = ["FORMAT", "LEASE", "MARKER", "RUN_FOLDER", "CommitRecord", "check_data_file"]
