"""Maintenance of one Iceberg table: expire old snapshots, then delete files no snapshot references.

Snapshots are expired only when older than the policy allows and not among the newest kept; never a
branch or tag head, and never the newest snapshot of each Dativo job and dataset in the current ancestry
nor any snapshot between it and the current one (its state and run id live there, found by walking the
ancestry: expiring one would make the next incremental run start over).

A file under the table's location is an orphan when no remaining snapshot references it — as a manifest
list, manifest, data or delete file — and it is none of the table's metadata files (current, the metadata
log, statistics); it is deleted only when older than the policy's orphan age, since a run in progress
writes its files before it commits them.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

import pyarrow.fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from dativo.maintenance import MaintenancePolicy, MaintenanceResult
from dativo.writers.iceberg.commit import DATASET, JOB, ancestry


def needed_snapshots(table: Table) -> set[int]:
    """Snapshots the jobs need, and every branch or tag head.

    A job finds its state by walking the current snapshot's ancestry back to its newest commit, so the
    whole chain from the current snapshot down to the oldest "newest commit of a job's dataset" is needed:
    expiring a snapshot in between would cut the walk short.
    """
    needed = {ref.snapshot_id for ref in table.metadata.refs.values()}
    chain = list(ancestry(table.metadata))
    seen: set[tuple[str, str | None]] = set()
    deepest = -1
    for depth, snapshot in enumerate(chain):
        summary = snapshot.summary
        if summary is None or summary.get(JOB) is None:
            continue
        key = (str(summary.get(JOB)), summary.get(DATASET))
        if key not in seen:
            seen.add(key)
            deepest = depth
    return needed | {s.snapshot_id for s in chain[: deepest + 1]}


def expirable(table: Table, policy: MaintenancePolicy, now_ms: int) -> tuple[list[int], list[int]]:
    """``(snapshots to expire, snapshots kept only because a job needs them)``."""
    if policy.snapshot_age_s is None:
        return [], []
    snapshots = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
    newest = {s.snapshot_id for s in snapshots[: policy.retain_last]}
    needed = needed_snapshots(table)
    cutoff = now_ms - int(policy.snapshot_age_s * 1000)
    old = [s.snapshot_id for s in snapshots if s.timestamp_ms < cutoff and s.snapshot_id not in newest]
    return [i for i in old if i not in needed], [i for i in old if i in needed]


def referenced(table: Table, snapshots: list[Snapshot]) -> set[str]:
    """Every file path (without scheme) that ``snapshots`` and the table's metadata reference."""
    io = table.io
    uris: set[str] = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    uris |= {stats.statistics_path for stats in table.metadata.statistics}
    uris |= {stats.statistics_path for stats in table.metadata.partition_statistics}
    manifests: dict[str, object] = {}
    for snapshot in snapshots:
        uris.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            manifests.setdefault(manifest.manifest_path, manifest)
    for path, manifest in manifests.items():
        uris.add(path)
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=False):  # type: ignore[attr-defined]
            uris.add(entry.data_file.file_path)
    return {PyArrowFileIO.parse_location(uri)[2] for uri in uris}


def maintain(
    table: Table, policy: MaintenancePolicy, *, dry_run: bool, logger: logging.Logger, now: float | None = None
) -> MaintenanceResult:
    """Expire snapshots and delete orphan files of ``table`` as the module docstring says."""
    now = time.time() if now is None else now
    name = ".".join(table.name())
    result = MaintenanceResult(target=name, dry_run=dry_run)
    expire, kept = expirable(table, policy, int(now * 1000))
    result.expired_snapshots, result.kept_snapshots = expire, kept
    if expire and not dry_run:
        table.maintenance.expire_snapshots().by_ids(expire).commit()
        table = table.refresh()
        logger.info("%s: expired %d snapshot(s)", name, len(expire))
    remaining = [s for s in table.metadata.snapshots if s.snapshot_id not in set(expire)]
    keep = referenced(table, remaining)
    scheme, netloc, root = PyArrowFileIO.parse_location(table.location())
    fs = table.io.fs_by_scheme(scheme, netloc)  # type: ignore[attr-defined]
    cutoff = now - policy.orphan_age_s
    try:
        infos = fs.get_file_info(pafs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True))
    except OSError as exc:
        logger.warning("%s: cannot list %s: %s", name, table.location(), exc)
        return result
    for info in infos:
        if info.type != pafs.FileType.File or info.path in keep:
            continue
        mtime = info.mtime.replace(tzinfo=info.mtime.tzinfo or timezone.utc).timestamp() if isinstance(
            info.mtime, datetime) else now
        if mtime > cutoff:
            continue
        result.orphan_files.append(info.path)
        result.orphan_bytes += info.size or 0
        if not dry_run:
            try:
                fs.delete_file(info.path)
            except FileNotFoundError:
                pass
    if result.orphan_files:
        logger.info("%s: %s %d orphan file(s), %d bytes", name, "would delete" if dry_run else "deleted",
                    len(result.orphan_files), result.orphan_bytes)
    return result
