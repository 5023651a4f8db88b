"""Run splits as threads in this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from dativo.streams import Cancelled


class LocalExecutor:
    """Runs tasks on a bounded pool of threads.

    Args:
        parallelism: Tasks run at once (at least one).
    """

    def __init__(self, parallelism: int) -> None:
        self.parallelism = max(1, parallelism)

    def run(self, tasks: Sequence[Callable[[], None]], cancel: threading.Event) -> None:
        """Run every task; on the first failure set ``cancel``, wait for the rest and raise that failure.

        Raises:
            BaseException: The first failure that is not the :class:`~dativo.streams.Cancelled` of a task
                stopped because of it.
        """
        workers = min(self.parallelism, len(tasks)) or 1
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dativo-split") as pool:
            futures: list[Future[None]] = [pool.submit(task) for task in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if not any(f.exception() is not None for f in done):
                return
            cancel.set()
            for future in futures:
                future.cancel()
            wait(futures)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
            assert first is not None
            raise first
