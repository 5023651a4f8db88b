"""Run splits as threads in this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from dativo.streams import Cancelled

INTERRUPT_GRACE_S = 1.5
"""How long an interrupted run waits for its splits to stop at their next batch."""


class LocalExecutor:
    """Runs tasks on a bounded pool of threads.

    Args:
        parallelism: Tasks run at once (at least one).

    Attributes:
        abandoned: Tasks still running when :meth:`run` returned (only after an interrupt outlived its grace
            period): the plugins they use must not be closed under them.
    """

    def __init__(self, parallelism: int) -> None:
        self.parallelism = max(1, parallelism)
        self.abandoned = 0

    def run(self, tasks: Sequence[Callable[[], None]], cancel: threading.Event) -> None:
        """Run every task; on the first failure set ``cancel``, wait for the rest and raise that failure.

        An interrupt (``KeyboardInterrupt``, or any exception raised into this thread by a signal handler)
        sets ``cancel`` at once, waits at most :data:`INTERRUPT_GRACE_S` for running tasks to stop, and is
        raised again; tasks not yet started never start.

        Raises:
            BaseException: The first failure that is not the :class:`~dativo.streams.Cancelled` of a task
                stopped because of it, or the interrupt.
        """
        workers = min(self.parallelism, len(tasks)) or 1
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dativo-split")
        futures: list[Future[None]] = []
        try:
            futures = [pool.submit(task) for task in tasks]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if not any(f.exception() is not None for f in done):
                return
            self._stop(futures, cancel)
            wait(futures)
            errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
            first = next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
            assert first is not None
            raise first
        except BaseException:
            if not cancel.is_set():  # interrupted here, not by a task's failure
                self._stop(futures, cancel)
                _, running = wait(futures, timeout=INTERRUPT_GRACE_S)
                self.abandoned = len(running)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _stop(futures: list[Future[None]], cancel: threading.Event) -> None:
        cancel.set()
        for future in futures:
            future.cancel()
