"""Keeping a target tidy: what ``dativo maintain`` asks of a writer, and what it reports.

Killed runs leave data files nobody references, and every run adds a snapshot. A writer that can clean up
implements :class:`Maintainable`; the engine calls it once per dataset of the job. Maintenance never touches
what a reader of the target can see, nor what the job needs to continue (its state and the newest commit
of each dataset), nor files young enough to belong to a run still in progress.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from dativo.api import Dataset
from dativo.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MIN_ORPHAN_AGE_S = 3600.0
"""The youngest a file may be to be deleted as an orphan: a run in progress writes files before it commits."""


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``30m``, ``12h``, ``3d``, ``2w`` or plain seconds.

    Raises:
        ConfigError: Naming ``option`` when ``text`` is not a duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{option} {text!r} is not a duration", hint="Write e.g. 90m, 12h, 3d or 2w.")
    return float(match[1]) * _UNITS[match[2] or "s"]


@dataclass(frozen=True)
class MaintenancePolicy:
    """What maintenance may remove.

    Attributes:
        orphan_age_s: Files no commit references are deleted once older than this (at least one hour).
        snapshot_age_s: Snapshots older than this are expired (``None``: none are).
        retain_last: The newest snapshots always kept, whatever their age.
    """

    orphan_age_s: float = 3 * 86400
    snapshot_age_s: float | None = 7 * 86400
    retain_last: int = 10

    def __post_init__(self) -> None:
        if self.orphan_age_s < MIN_ORPHAN_AGE_S:
            raise ConfigError(
                f"--orphans-older-than must be at least {MIN_ORPHAN_AGE_S / 3600:g} h",
                hint="A run in progress writes its files before it commits them; give it time.",
            )
        if self.retain_last < 1:
            raise ConfigError("--retain-last must be at least 1", hint="The newest snapshot is always kept.")


@dataclass
class MaintenanceResult:
    """What maintenance did (or, with ``dry_run``, would do) to one dataset's target.

    Attributes:
        target: The table or folder.
        expired_snapshots: Snapshot ids expired.
        kept_snapshots: Snapshots kept because the job needs them (its state, the newest per dataset).
        orphan_files: Files deleted because no snapshot references them.
        orphan_bytes: Their size.
        dry_run: Nothing was changed.
    """

    target: str
    expired_snapshots: list[int] = field(default_factory=list)
    kept_snapshots: list[int] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    orphan_bytes: int = 0
    dry_run: bool = False


@runtime_checkable
class Maintainable(Protocol):
    """A writer that ``dativo maintain`` can tidy."""

    def maintain(self, dataset: Dataset, policy: MaintenancePolicy, *, dry_run: bool) -> MaintenanceResult:
        """Expire what the policy allows and delete orphan files of ``dataset``'s target."""
        ...
