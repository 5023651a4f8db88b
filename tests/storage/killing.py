"""Commit one run in this process and SIGKILL it at a chosen moment (the storage crash tests).

Usage: ``python -m tests.storage.killing <kill point> <folder or s3:// URL> <run id> [<S3 settings JSON>]``.
The run stages two files (ids 10, 11 and 12), then commits them; the kill is ``SIGKILL`` of the whole
process, so no ``finally`` and no cleanup runs. Kill points:

- ``before_rename``: local append, when the staging folder is about to be renamed into place;
- ``after_exchange``: local overwrite, right after the directory exchange, before the old content is deleted;
- ``between_renames``: local overwrite without ``renameat2`` (the fallback of three renames), after the first
  rename moved the dataset's folder aside and before the new one took its place;
- ``before_last_rename``: the same fallback, after the new folder took the dataset's place, before the parked
  old content was renamed to the temporary name;
- ``after_put``: S3, right after the PUT of the log object, before any file is copied;
- ``mid_copy``: S3, once the roll-forward copied the first file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from dativo.storage import LocalStore, S3Settings, S3Store, Store
from dativo.storage import dirs
from tests.storage.helpers import commit, stage


def kill() -> None:
    """SIGKILL this process, now."""
    os.kill(os.getpid(), signal.SIGKILL)


class _KilledAfterOneCopy:
    """The store's file system, except that the process dies right after the first ``copy_file``."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)
        kill()


def main(point: str, location: str, run_id: str, settings: str = "{}") -> None:
    store: Store
    if location.startswith("s3://"):
        store = S3Store(location, S3Settings.model_validate(json.loads(settings)))
    else:
        store = LocalStore(location)
    store.prepare(run_id)
    files = stage(store, run_id, [10, 11], [12])
    local_overwrite = ("after_exchange", "between_renames", "before_last_rename")
    mode = "overwrite" if point in local_overwrite else "append"
    rename = os.rename
    if point == "before_rename":

        def guarded(src: Any, dst: Any, **dir_fds: Any) -> None:
            if os.fspath(src) == run_id:  # the staging folder, renamed relative to _dativo/staging
                kill()
            rename(src, dst, **dir_fds)

        os.rename = guarded  # type: ignore[assignment]
    elif point == "after_exchange":
        exchange = dirs.exchange

        def then_die(*args: Any) -> None:
            exchange(*args)
            kill()

        dirs.exchange = then_die  # type: ignore[assignment]
    elif point in ("between_renames", "before_last_rename"):
        dirs.renameat2 = None  # as on a system without RENAME_EXCHANGE
        renames = {"n": 0}
        die_after = 1 if point == "between_renames" else 2

        def counted(src: Any, dst: Any, **dir_fds: Any) -> None:
            rename(src, dst, **dir_fds)
            if os.fspath(dst) == dirs.parked(os.path.basename(location)) or renames["n"]:
                renames["n"] += 1
                if renames["n"] == die_after:
                    kill()

        os.rename = counted  # type: ignore[assignment]
    elif point == "after_put":
        S3Store.roll_forward = lambda self, record: kill()  # type: ignore[method-assign]
    elif point == "mid_copy":
        store.fs = _KilledAfterOneCopy(store.fs)  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown kill point {point!r}")
    commit(store, run_id, files, mode=mode)
    raise SystemExit("the commit returned: the kill point was never reached")


if __name__ == "__main__":
    main(*sys.argv[1:])
