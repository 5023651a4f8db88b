"""Plugin counters (``Context.count``): bounded names and values, threads, and the run report."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from dativo.config import load_job
from dativo.counters import MAX_COUNTERS, MAX_VALUE, Counters
from dativo.engine import Engine

PLUGINS = "tests.fixtures.plugins"


def test_counts_add_up_across_threads() -> None:
    counters = Counters()

    def work() -> None:
        for _ in range(10_000):
            counters.add("rows")
            counters.add("bytes", 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.snapshot() == {"bytes": 240_000, "rows": 80_000}


@pytest.mark.parametrize("name", ["", "-starts-with-a-dash", "has space", "x" * 101, "new\nline", "\x1b[31m", 7, None])
def test_a_bad_name_is_refused(name: object) -> None:
    with pytest.raises(ValueError, match="counter name"):
        Counters().add(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, 1.5, "3", True, None, MAX_VALUE + 1])
def test_a_bad_count_is_refused(n: object) -> None:
    with pytest.raises(ValueError, match="not an integer from 0 to 2\\^63 - 1"):
        Counters().add("rows", n)  # type: ignore[arg-type]


def test_a_total_stops_at_the_largest_long() -> None:
    counters = Counters()
    counters.add("big", MAX_VALUE)
    counters.add("big", MAX_VALUE)
    assert counters.snapshot() == {"big": MAX_VALUE}


def test_names_beyond_the_limit_are_dropped_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    with caplog.at_level(logging.WARNING, logger="dativo"):
        for i in range(MAX_COUNTERS + 50):
            counters.add(f"c{i}")
        counters.add("c0", 5)  # a name already kept still counts
    assert len(counters.snapshot()) == MAX_COUNTERS and counters.snapshot()["c0"] == 6
    assert [r.getMessage() for r in caplog.records] == [
        f"more than {MAX_COUNTERS} counter names: counter c{MAX_COUNTERS} and later new names are not kept"]


def test_merging_what_another_process_sent_keeps_only_counts(caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    with caplog.at_level(logging.WARNING, logger="dativo"):
        counters.merge({"rows": 3, "": 1, "neg": -1, "text": "7", "flag": True, "ok.name": 2}, "plugin p")
        counters.merge(["not", "an", "object"], "plugin p")
        counters.merge(None, "plugin p")
    assert counters.snapshot() == {"ok.name": 2, "rows": 3}
    assert [r.getMessage() for r in caplog.records] == [
        "plugin p sent 4 counter(s) that are not a name with a count; they are ignored",
        "plugin p sent counters that are not an object; they are ignored"]


def test_a_context_with_its_counters_pickles() -> None:
    """A plugin may send its context to a process pool: it pickles, with the counts so far."""
    import pickle

    from dativo.api import Context

    ctx = Context("job", "run", "plugin", logging.getLogger("t"))
    ctx.count("rows", 3)
    copy = pickle.loads(pickle.dumps(ctx))
    copy.count("rows", 1)
    assert copy.counters.snapshot() == {"rows": 4} and ctx.counters.snapshot() == {"rows": 3}


# --- into the run report ------------------------------------------------------------------------------------


@pytest.fixture
def engine(write_job: Callable[..., Path]) -> Callable[..., Engine]:
    def make(text: str, **kwargs: object) -> Engine:
        return Engine(load_job(write_job(text)), **kwargs)  # type: ignore[arg-type]

    return make


def job(reader: str, *, writer: str | None = None, fallback: str = "fail") -> str:
    target = "target: {type: parquet, path: out/items}"
    if writer:
        target = f'target: {{type: parquet, path: out/items, writer: {{type: custom, implementation: "{writer}"}}}}'
    return f"""\
        version: 1
        name: items
        source:
          type: csv
          path: data/names.csv
          parallelism: 4
          reader: {{type: custom, implementation: "{reader}", fallback: {fallback}}}
        {target}
        """


def test_what_the_reader_and_the_writer_counted_is_in_the_report(workdir: Path, engine) -> None:
    report = engine(job(f"{PLUGINS}:CountingReader", writer=f"{PLUGINS}:CountingWriter")).run()
    assert report.rows_written == 20
    assert report.counters == {"reader": {"batches": 12, "rows.seen": 20}, "writer": {"splits_written": 4}}
    assert '"rows.seen": 20' in report.to_json()


def test_a_run_that_counts_nothing_reports_no_counters(workdir: Path, engine) -> None:
    report = engine(job(f"{PLUGINS}:SplitReader")).run()
    assert report.counters == {}


def test_a_fallback_reports_the_counts_of_the_attempt_that_committed_only(workdir: Path, engine) -> None:
    (workdir / "data" / "names.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    report = engine(job(f"{PLUGINS}:CountingThenRaising", writer=f"{PLUGINS}:CountingWriter",
                        fallback="default")).run()
    assert report.fallback_used and report.reader and report.reader.implementation == "csv"
    assert report.counters == {"writer": {"splits_written": 1}}  # the built-in csv reader counts nothing
