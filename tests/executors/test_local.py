"""The local executor: bounded threads, the first failure cancels the rest and is the one raised."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dativo.executors.local import LocalExecutor
from dativo.streams import Cancelled


def test_runs_every_task_at_most_parallelism_at_once() -> None:
    running = 0
    peak = 0
    done: list[int] = []
    lock = threading.Lock()

    def task(i: int):
        def run() -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
                done.append(i)
        return run

    LocalExecutor(2).run([task(i) for i in range(6)], threading.Event())
    assert sorted(done) == list(range(6))
    assert 1 <= peak <= 2


def test_first_failure_cancels_the_others_and_is_raised() -> None:
    cancel = threading.Event()
    stopped: list[str] = []

    def slow() -> None:
        while not cancel.is_set():
            time.sleep(0.01)
        stopped.append("slow")
        raise Cancelled()

    def failing() -> None:
        time.sleep(0.05)
        raise ValueError("split 2 broke")

    with pytest.raises(ValueError, match="split 2 broke"):
        LocalExecutor(2).run([slow, failing], cancel)
    assert cancel.is_set() and stopped == ["slow"]


def test_tasks_not_started_are_never_run_after_a_failure() -> None:
    ran: list[int] = []

    def failing() -> None:
        raise RuntimeError("first")

    def later() -> None:
        ran.append(1)

    with pytest.raises(RuntimeError, match="first"):
        LocalExecutor(1).run([failing, *[later] * 20], threading.Event())
    assert len(ran) < 20


def test_no_tasks_is_fine() -> None:
    LocalExecutor(4).run([], threading.Event())


def test_an_interrupt_cancels_at_once_and_does_not_wait_for_a_stuck_task() -> None:
    cancel = threading.Event()
    release = threading.Event()
    polite: list[str] = []

    def stuck() -> None:  # ignores cancel: a plugin blocked in a call
        release.wait(30)

    def cooperative() -> None:
        while not cancel.is_set():
            time.sleep(0.01)
        polite.append("stopped")
        raise Cancelled()

    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # as Ctrl-C does
    executor = LocalExecutor(2)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            executor.run([stuck, cooperative], cancel)
        assert time.monotonic() - started < 5
        assert cancel.is_set() and polite == ["stopped"]
        assert executor.abandoned == 1
    finally:
        release.set()
