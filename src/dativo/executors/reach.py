"""Which places a job names must every node of a cluster reach, and whether they can.

Under ``executor: ray`` each split runs on some node of the cluster: it reads the source and writes data
files there, and only the driver commits. A built-in connector's local path (a file source, a parquet target,
an Iceberg warehouse) or the embedded SQLite catalog lives on the driver's disk, which other nodes do not
see. :func:`unreachable` finds them before anything runs, so the job is refused up front with the reason and
what to use instead, rather than failing on a worker after the target was created. A folder the user
declares in ``executor.shared_paths`` (mounted at the same path on every node) is accepted.

A connector this module does not know (a custom type, read or written by a plugin) says what its keys mean
itself, so its ``path`` (beside the type, or in the implementation's ``options``) is refused only when it
names a file or folder that exists on the driver's disk outside the shared paths: that is data the workers
would not find.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dativo.config import JobConfig
from dativo.errors import ConfigError
from dativo.registry import has_builtin

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


def _exists(path: Path) -> bool:
    """Whether ``path`` (which may be a glob) names something on this machine's disk."""
    return path.exists() or (glob.has_magic(str(path)) and bool(glob.glob(str(path))))


def _plugin_paths(name: str, role: str, settings: dict[str, Any], options: dict[str, Any]
                  ) -> Iterator[tuple[str, Any]]:
    """The ``(YAML path, value)`` of every path a custom connector's section names, lists flattened."""
    for where, value in ((f"{name}.path", settings.get("path")), (f"{name}.{role}.options.path", options.get("path"))):
        for item in value if isinstance(value, list) else [value]:
            yield where, item


def unreachable(job: JobConfig, work_dir: Path) -> list[tuple[str, str]]:
    """The places of ``job`` only the driver can reach: ``(YAML path, why)`` pairs, empty when none.

    Args:
        job: The validated job.
        work_dir: The run's work directory (where embedded defaults live).
    """
    base = job.path.parent.resolve() if job.path else Path.cwd()
    shared = [Path(os.path.abspath(os.path.expanduser(p))) for p in job.executor.shared_paths]
    found: list[tuple[str, str]] = []

    def check(where: str, location: Any, what: str, *, existing: bool = False) -> None:
        if not isinstance(location, str):
            return
        local = _local(location)
        if local is None:
            return
        if existing:  # a plugin's path may be relative to the working directory or to the job's folder
            candidates = [p for p in (_absolute(local, Path.cwd()), _absolute(local, base)) if _exists(p)]
            if not candidates:
                return
            path = candidates[0]
        else:
            path = _absolute(local, base)
        if not _shared(path, shared):
            found.append((where, f"{what} {path} is on the driver's disk"))

    source, target = job.source.settings(), job.target.settings()
    if job.source.type in _FILE_SOURCES:
        paths = source.get("path")
        for path in paths if isinstance(paths, list) else [paths]:
            check("source.path", path, "the source path")
    elif not has_builtin("reader", job.source.type):
        for where, path in _plugin_paths("source", "reader", source, job.source.reader.options):
            check(where, path, "the source path", existing=True)
    if job.target.type == "parquet":
        check("target.path", target.get("path"), "the target path")
    elif not has_builtin("writer", job.target.type):
        for where, path in _plugin_paths("target", "writer", target, job.target.writer.options):
            check(where, path, "the target path", existing=True)
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
