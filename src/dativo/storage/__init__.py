"""Storage shared by writers of files: S3 settings, staged files and their atomic commit, locally or on S3.

Modules, each importing only those above it:

- :mod:`.s3`: :class:`S3Settings` and the ``pyarrow.fs`` S3 file system built from them;
- :mod:`.record`: :class:`CommitRecord`, what one commit says, and the names of run folders;
- :mod:`.dirs`: folders opened without following links, ``flock`` locks, the atomic directory exchange;
- :mod:`.store`: the commit protocol (documented there) and the :class:`Store` base class;
- :mod:`.local`: :class:`LocalStore`, a local folder (a lock per target, a lease per run, one ``rename``
  or directory exchange per commit);
- :mod:`.objectstore`: :class:`S3Store`, an S3 prefix (a commit log with numbered slots, roll-forward);
- :mod:`.sink`: :class:`ParquetSink`, a stream into staged Parquet files, optionally encrypted;
- :mod:`.options`: :class:`StoreOptions` (``path``, ``s3`` …) and :func:`open_store`;
- :mod:`.datasets`: :class:`DatasetStores`, a writer's stores, one per dataset, and the steps of a run
  (check, prepare, write, commit, abort) that file writers delegate to it.

The public names are also exported by :mod:`dativo.api`, so plugins can build on them.
"""

from dativo.storage.datasets import DatasetStores, Written
from dativo.storage.dirs import Folder, LinkRefused, exchange
from dativo.storage.local import LocalStore, target_problem
from dativo.storage.objectstore import S3Store
from dativo.storage.options import MAX_S3_FILE_MB, StoreOptions, open_store
from dativo.storage.record import LEASE, MARKER, CommitRecord
from dativo.storage.s3 import S3Settings, redact, s3_filesystem
from dativo.storage.sink import ROW_GROUP_MB, ParquetSink, StagedFiles
from dativo.storage.store import DISK_FULL, STALE_STAGING_S, Commit, Store

__all__ = [
    "DISK_FULL",
    "LEASE",
    "MARKER",
    "MAX_S3_FILE_MB",
    "ROW_GROUP_MB",
    "STALE_STAGING_S",
    "Commit",
    "CommitRecord",
    "DatasetStores",
    "Folder",
    "LinkRefused",
    "LocalStore",
    "ParquetSink",
    "S3Settings",
    "S3Store",
    "StagedFiles",
    "Store",
    "StoreOptions",
    "Written",
    "exchange",
    "open_store",
    "redact",
    "s3_filesystem",
    "target_problem",
]
