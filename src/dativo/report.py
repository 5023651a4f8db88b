"""The run report: what a run did, for people (a table) and machines (``--json``)."""

from __future__ import annotations

import logging
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, Field

from dativo.secrets import redact, shown


class PluginReport(BaseModel):
    """Which implementation ran on one side."""

    implementation: str
    origin: str = ""
    language: str = "python"
    version: str = ""


class DatasetReport(BaseModel):
    """What happened to one dataset."""

    name: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    splits: int = 0
    commit_id: str | None = None
    no_op: bool = False
    state: dict[str, Any] | None = None


class NodeReport(BaseModel):
    """What one node of a cluster did (``executor: ray``)."""

    node: str
    splits: int = 0
    rows: int = 0
    seconds: float = 0.0
    """Time its splits took, summed."""
    rows_per_s: float = 0.0


class RunReport(BaseModel):
    """The outcome of one run; ``dativo run --json`` prints exactly this."""

    job: str
    run_id: str
    status: Literal["succeeded", "failed"] = "succeeded"
    rows_read: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    memory_budget_mb: int = 0
    """The job's ``memory_mb``: what its buffers were sized to (``peak_rss_mb`` adds the libraries' own)."""
    reader: PluginReport | None = None
    writer: PluginReport | None = None
    full_refresh: bool = False
    fallback_used: bool = False
    fallback_reason: str | None = None
    commit_id: str | None = None
    datasets: list[DatasetReport] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    warnings: list[str] = Field(default_factory=list)
    """What the run warned about (NULL cursors, fallbacks, a writer's miscount …), also under ``--json``."""
    counters: dict[str, dict[str, int]] = Field(default_factory=dict)
    """What the plugins counted (``Context.count``), per side: ``{"reader": {"rejected_records": 2}}``."""
    executor: Literal["local", "ray"] = "local"
    nodes: list[NodeReport] = Field(default_factory=list)
    """Per node of the cluster (``executor: ray``): splits, rows and seconds."""
    retries: int = 0
    """Split attempts the cluster ran again after a worker died (``executor: ray``)."""

    def finish(self, seconds: float) -> RunReport:
        """Fill in the derived numbers at the end of the run."""
        self.seconds = round(seconds, 3)
        self.rows_per_s = round(self.rows_read / seconds, 1) if seconds > 0 else 0.0
        self.peak_rss_mb = peak_rss_mb()
        return self

    def to_json(self) -> str:
        """The report as JSON, with secrets redacted."""
        return redact(self.model_dump_json(indent=2))


MAX_WARNINGS = 50
"""Warnings kept in one report; a plugin that warns without end cannot grow it."""
_WARNING_CHARS = 2000


class _Collector(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.into) < MAX_WARNINGS:
            self.into.append(shown(redact(record.getMessage()))[:_WARNING_CHARS])


@contextmanager
def collecting_warnings(into: list[str]) -> Iterator[None]:
    """Append the message of every warning Dativo and its plugins log meanwhile to ``into``."""
    collector = _Collector(into)
    logger = logging.getLogger("dativo")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)


def peak_rss_mb() -> float:
    """Peak resident memory of this process and any children it waited for, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)
