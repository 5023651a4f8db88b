"""The run report: what a run did, for people (a table) and machines (``--json``)."""

from __future__ import annotations

import resource
from typing import Any, Literal

from pydantic import BaseModel, Field

from dativo.secrets import redact


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
    reader: PluginReport | None = None
    writer: PluginReport | None = None
    fallback_used: bool = False
    fallback_reason: str | None = None
    commit_id: str | None = None
    datasets: list[DatasetReport] = Field(default_factory=list)
    error: str | None = None
    error_type: str | None = None

    def finish(self, seconds: float) -> RunReport:
        """Fill in the derived numbers at the end of the run."""
        self.seconds = round(seconds, 3)
        self.rows_per_s = round(self.rows_read / seconds, 1) if seconds > 0 else 0.0
        self.peak_rss_mb = peak_rss_mb()
        return self

    def to_json(self) -> str:
        """The report as JSON, with secrets redacted."""
        return redact(self.model_dump_json(indent=2))


def peak_rss_mb() -> float:
    """Peak resident memory of this process and any children it waited for, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)
