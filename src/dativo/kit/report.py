"""The certification report: the checks, the level they earn, performance and the differential, as JSON and Markdown.

Levels, each including the one before:

- ``compatible`` — the plugin loads and every contract check passes (a check that does not apply, such as the
  incremental checks of a reader without a cursor, is skipped and does not count against it);
- ``certified`` — also every fault check passes, and the differential check passes against the built-in of the
  same connector type (``--against default``); a plugin whose connector has no built-in, or that *is* the
  built-in, has nothing to be compared with and needs only the fault checks;
- ``sandbox-safe`` — also the sandboxed checks pass (``--sandbox``).

The exit code of ``dativo plugin test`` is 0 when no check failed (the level is then at least ``compatible``),
3 when one did; 2 for a usage or configuration error, before any check ran.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dativo import __version__
from dativo.api import API_VERSION
from dativo.kit.checks import Check
from dativo.kit.differential import DatasetDiff
from dativo.kit.perf import PerfLine
from dativo.secrets import redact

LEVELS = ("compatible", "certified", "sandbox-safe")
"""The levels, lowest first."""


def level_of(checks: list[Check]) -> str | None:
    """The highest level ``checks`` earn (see the module's docstring), or ``None``."""
    def ok(group: str) -> bool:
        members = [c for c in checks if c.group == group]
        return all(c.status != "fail" and not (c.status == "skip" and c.blocks) for c in members)

    load = next((c for c in checks if c.name == "load"), None)
    if load is None or load.status != "pass" or not ok("contract"):
        return None
    level = "compatible"
    if not (ok("fault") and ok("differential")):
        return level
    level = "certified"
    sandboxed = [c for c in checks if c.group == "sandbox"]
    if sandboxed and ok("sandbox") and any(c.status == "pass" for c in sandboxed):
        level = "sandbox-safe"
    return level


def at_least(level: str | None, wanted: str) -> bool:
    """Whether ``level`` is ``wanted`` or above."""
    return level is not None and LEVELS.index(level) >= LEVELS.index(wanted)


@dataclass
class KitReport:
    """The outcome of one kit run.

    Attributes:
        plugin: What was tested: ``implementation``, ``role``, ``name``, ``origin``, ``version``, ``language``,
            ``api_version``, ``connector``.
        job: The job file it was configured from, if any.
        against: ``default`` when the differential was asked for.
        sandbox: Whether the sandboxed checks were asked for.
        checks: Every check, in the order it ran.
        perf: Performance lines (the plugin's, and the built-in's beside it).
        differential: The differential comparison, per dataset.
        notes: What the reader of the report should know (limits of a check here).
        seconds: How long the kit ran.
    """

    plugin: dict[str, Any]
    job: str | None = None
    against: str | None = None
    sandbox: bool = False
    checks: list[Check] = field(default_factory=list)
    perf: list[PerfLine] = field(default_factory=list)
    differential: list[DatasetDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def level(self) -> str | None:
        """The level earned (``None``: not even ``compatible``)."""
        return level_of(self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if c.status == "fail"]

    @property
    def exit_code(self) -> int:
        """0 when no check failed, else 3."""
        return 3 if self.failures or self.level is None else 0

    def check(self, name: str) -> Check:
        """The outcome of the check ``name``.

        Raises:
            KeyError: No check of that name ran.
        """
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r} ran; the checks were: {', '.join(c.name for c in self.checks)}")

    def assert_level(self, wanted: str = "compatible") -> None:
        """Raise ``AssertionError`` listing the failures unless the level is ``wanted`` or above (for tests)."""
        if wanted not in LEVELS:
            raise ValueError(f"the levels are {', '.join(LEVELS)}, not {wanted!r}")
        if not at_least(self.level, wanted):
            lines = [c.line for c in self.failures] or [c.line for c in self.checks if c.blocks]
            raise AssertionError(f"{self.plugin.get('implementation')} is {self.level or 'not compatible'}, not "
                                 f"{wanted}:\n  " + "\n  ".join(lines))

    # --- output -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data."""
        return {
            "kit": {"dativo": __version__, "api": API_VERSION, "created": self.created, "seconds": round(self.seconds, 2)},
            "plugin": self.plugin,
            "job": self.job,
            "against": self.against,
            "sandbox": self.sandbox,
            "level": self.level,
            "passed": sum(c.status == "pass" for c in self.checks),
            "failed": sum(c.status == "fail" for c in self.checks),
            "skipped": sum(c.status == "skip" for c in self.checks),
            "checks": [c.to_dict() for c in self.checks],
            "performance": [p.to_dict() for p in self.perf],
            "differential": [d.to_dict() for d in self.differential],
            "notes": self.notes,
        }

    def to_json(self) -> str:
        """The report as JSON text (secrets redacted)."""
        return redact(json.dumps(self.to_dict(), indent=2, default=str))

    def to_markdown(self) -> str:
        """The report as Markdown (secrets redacted)."""
        p = self.plugin
        cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines = [
            f"# Dativo plugin certification: {cell(p.get('implementation'))}",
            "",
            f"**Level: {self.level or 'not compatible'}** · {sum(c.status == 'pass' for c in self.checks)} passed, "
            f"{len(self.failures)} failed, {sum(c.status == 'skip' for c in self.checks)} skipped · "
            f"dativo {__version__} (API {API_VERSION}) · {self.created}",
            "",
            "| plugin | |",
            "|---|---|",
        ]
        for key in ("implementation", "role", "origin", "version", "language", "api_version", "connector"):
            lines.append(f"| {key} | {cell(p.get(key) if p.get(key) is not None else '-')} |")
        lines += [f"| job | {cell(self.job or '-')} |", f"| against | {cell(self.against or '-')} |",
                  f"| sandbox | {'yes' if self.sandbox else 'no'} |", "", "## Checks", "",
                  "| check | group | status | reason |", "|---|---|---|---|"]
        marks = {"pass": "✅ pass", "fail": "❌ fail", "skip": "⏭ skip"}
        for c in self.checks:
            lines.append(f"| {c.name} | {c.group} | {marks[c.status]} | {cell(c.reason)} |")
        if self.perf:
            lines += ["", "## Performance", "",
                      "| | implementation | pass | rows | rows/s | MB/s | peak RSS MiB | CPU s |",
                      "|---|---|---|---:|---:|---:|---:|---:|"]
            for line in self.perf:
                lines.append(f"| {cell(line.label)} | {cell(line.implementation)} | {line.what} | {line.rows:,} | "
                             f"{line.rows_per_s:,.0f} | {line.mb_per_s:,.1f} | {line.peak_rss_mb:,.0f} | "
                             f"{line.cpu_s:.2f} |")
        if self.differential:
            lines += ["", "## Differential (against the built-in)", "",
                      "| dataset | keyed by | plugin rows | built-in rows | differing | only plugin | only built-in "
                      "| schema |", "|---|---|---:|---:|---:|---:|---:|---|"]
            for d in self.differential:
                lines.append(f"| {cell(d.dataset)} | {cell(', '.join(d.keyed_by) or '(whole rows)')} | "
                             f"{d.rows_plugin:,} | {d.rows_builtin:,} | {d.differing:,} | {d.only_plugin:,} | "
                             f"{d.only_builtin:,} | {cell(d.schema or 'equal')} |")
            samples = [(d, s) for d in self.differential for s in d.samples[:5]]
            if samples:
                lines += ["", "First differing rows:", ""]
            for d, s in samples:
                if s.key is not None and s.columns and s.plugin and s.builtin:
                    what = "; ".join(f"`{cell(c)}`: plugin {cell(s.plugin[c])}, built-in {cell(s.builtin[c])}"
                                     for c in s.columns)
                elif s.plugin is None or s.builtin is None:
                    side = "the built-in" if s.plugin is None else "the plugin"
                    what = f"only {side} has {cell(s.plugin or s.builtin)}"
                else:
                    what = f"plugin {cell(s.plugin)}; built-in {cell(s.builtin)}"
                key = ", ".join(f"{k}={v}" for k, v in s.key.items()) if s.key else "(no key)"
                lines.append(f"- `{cell(d.dataset)}` {cell(key)}: {what}")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {note}" for note in self.notes]
        return redact("\n".join(lines) + "\n")

    def write(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` into ``folder`` (created); return their paths."""
        where = Path(folder)
        where.mkdir(parents=True, exist_ok=True)
        json_path, md_path = where / "report.json", where / "report.md"
        json_path.write_text(self.to_json() + "\n", encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return json_path, md_path


__all__ = ["LEVELS", "KitReport", "at_least", "level_of"]
