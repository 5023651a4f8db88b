"""Which places a job names must every node of a cluster reach, and whether they can.

Under ``executor: ray`` each split runs on some node of the cluster: it reads the source and writes data
files there, and only the driver commits. A built-in connector's local path (a file source, a parquet target,
an Iceberg warehouse) or the embedded SQLite catalog lives on the driver's disk, which other nodes do not
see. :func:`unreachable` finds them before anything runs, so the job is refused up front with the reason and
what to use instead, rather than failing on a worker after the target was created. A folder the user
declares in ``executor.shared_paths`` (mounted at the same path on every node) is accepted.

Connectors this module does not know (a custom type) are the plugin's own business: nothing is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dativo.config import JobConfig
from dativo.errors import ConfigError

_FILE_SOURCES = ("csv", "jsonl", "parquet")
_REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "abfs", "abfss", "hdfs", "http", "https")

_INSTEAD = (
    "Under executor: ray every node writes data files and reads the table's metadata, so use storage all "
    "nodes reach: an S3-compatible warehouse (s3://bucket/prefix) with a REST catalog or a SQL catalog on "
    "a database server (uri: postgresql+psycopg://…); or list the folder in executor.shared_paths if every "
    "node mounts it at the same path; or run on one machine with --executor local."
)


def _local(location: str) -> str | None:
    """The local path ``location`` names (``file://`` or a plain path), ``None`` for remote storage."""
    parsed = urlparse(location)
    if parsed.scheme in _REMOTE_SCHEMES:
        return None
    if parsed.scheme == "file":
        return parsed.path
    if parsed.scheme and len(parsed.scheme) > 1:  # another remote scheme: that file system's business
        return None
    return location


def _absolute(path: str, base: Path) -> Path:
    file = Path(os.path.expanduser(path))
    return Path(os.path.abspath(file if file.is_absolute() else base / file))


def _shared(path: Path, shared: list[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in shared)


def unreachable(job: JobConfig, work_dir: Path) -> list[tuple[str, str]]:
    """The places of ``job`` only the driver can reach: ``(YAML path, why)`` pairs, empty when none.

    Args:
        job: The validated job.
        work_dir: The run's work directory (where embedded defaults live).
    """
    base = job.path.parent.resolve() if job.path else Path.cwd()
    shared = [Path(os.path.abspath(os.path.expanduser(p))) for p in job.executor.shared_paths]
    found: list[tuple[str, str]] = []

    def check(where: str, location: Any, what: str) -> None:
        if not isinstance(location, str):
            return
        local = _local(location)
        if local is None:
            return
        path = _absolute(local, base)
        if not _shared(path, shared):
            found.append((where, f"{what} {path} is on the driver's disk"))

    source, target = job.source.settings(), job.target.settings()
    if job.source.type in _FILE_SOURCES:
        paths = source.get("path")
        for path in paths if isinstance(paths, list) else [paths]:
            check("source.path", path, "the source path")
    if job.target.type == "parquet":
        check("target.path", target.get("path"), "the target path")
    if job.target.type == "iceberg":
        catalog = target.get("catalog")
        if not isinstance(catalog, dict):
            embedded = work_dir / "catalog.db"
            if not _shared(embedded, shared):
                found.append(("target.catalog", f"no catalog is set, so the embedded SQLite catalog {embedded} "
                              f"and the warehouse {work_dir / 'warehouse'} on the driver's disk would be used"))
            return found
        if catalog.get("type", "sql") == "sql":
            uri = catalog.get("uri")
            if uri is None:
                check("target.catalog.uri", str(work_dir / "catalog.db"), "the embedded SQLite catalog")
            elif isinstance(uri, str) and uri.startswith("sqlite:"):
                check("target.catalog.uri", uri.removeprefix("sqlite:///").split("?", 1)[0] or ":memory:",
                      "the SQLite catalog")
            warehouse = catalog.get("warehouse")
            check("target.catalog.warehouse", str(work_dir / "warehouse") if warehouse is None else warehouse,
                  "the warehouse")
        elif isinstance(catalog.get("warehouse"), str) and catalog["warehouse"].startswith("file:"):
            check("target.catalog.warehouse", catalog["warehouse"], "the warehouse")
    return found


def refuse_unreachable(job: JobConfig, work_dir: Path) -> None:
    """Refuse a Ray run whose source or target only the driver can reach (see :func:`unreachable`).

    Raises:
        ConfigError: Naming each such place, why, and what to use instead.
    """
    found = unreachable(job, work_dir)
    if found:
        places = "; ".join(f"{where}: {why}" for where, why in found)
        raise ConfigError(
            f"executor: ray cannot run this job: {places}, which Ray workers on other nodes cannot reach",
            job=job.name,
            hint=_INSTEAD,
        )
