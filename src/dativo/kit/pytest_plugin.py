"""The conformance kit inside pytest, for plugin authors.

One test per check, with no test file to write::

    pytest -p dativo.kit.pytest_plugin --dativo-impl mypkg.reader:OrdersReader --dativo-options '{rows: 10}'

adds ``dativo-kit[IMPL]::<check>`` items (a failed check fails its item with the check's reason line, a
skipped check skips it) and ``dativo-kit[IMPL]::level``, which fails unless the level is at least
``--dativo-level`` (default ``compatible``). ``--dativo-job``, ``--dativo-kind``, ``--dativo-against``,
``--dativo-sandbox`` and ``--dativo-report DIR`` are the command's ``--job``, ``--kind``, ``--against``,
``--sandbox`` and ``--report``. The kit runs once, when the first item runs.

Or in a test of one's own, with the ``dativo_kit`` fixture (it runs :func:`dativo.kit.run_kit` with the
kit's temporary folder under pytest's ``tmp_path``)::

    def test_conformance(dativo_kit):
        report = dativo_kit("mypkg.reader:OrdersReader", options={"rows": 10})
        report.assert_level("compatible")
        assert report.check("plan-deterministic").status == "pass"

Enable the fixture with ``-p dativo.kit.pytest_plugin`` or ``pytest_plugins = ["dativo.kit.pytest_plugin"]``
in a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dativo.kit.report import LEVELS, KitReport, at_least
from dativo.kit.runner import CHECKS, run_kit

_REPORT = pytest.StashKey[KitReport]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dativo-kit", "Dativo plugin conformance kit")
    group.addoption("--dativo-impl", default=None, metavar="IMPL",
                    help="Run the conformance kit on IMPL (what a job's implementation: accepts).")
    group.addoption("--dativo-job", default=None, metavar="JOB", help="Configure it from this job file.")
    group.addoption("--dativo-kind", default=None, choices=("reader", "writer"), help="reader or writer.")
    group.addoption("--dativo-options", default=None, metavar="JSON", help="The plugin's options (JSON/YAML).")
    group.addoption("--dativo-against", default=None, choices=("default",),
                    help="Compare with the built-in of its connector type (needs --dativo-job).")
    group.addoption("--dativo-sandbox", action="store_true", default=False, help="Also run it sandboxed.")
    group.addoption("--dativo-level", default="compatible", choices=LEVELS, help="The level to require.")
    group.addoption("--dativo-report", default=None, metavar="DIR", help="Write report.json and report.md here.")


def _report(config: pytest.Config) -> KitReport:
    if _REPORT not in config.stash:
        report = run_kit(
            config.getoption("dativo_impl"),
            kind=config.getoption("dativo_kind"),
            job=config.getoption("dativo_job"),
            options=config.getoption("dativo_options"),
            against=config.getoption("dativo_against"),
            sandbox=config.getoption("dativo_sandbox"),
        )
        folder = config.getoption("dativo_report")
        if folder:
            report.write(folder)
        config.stash[_REPORT] = report
    return config.stash[_REPORT]


class CheckFailed(Exception):
    """A kit check failed; its message is the check's reason line."""


class KitItem(pytest.Item):
    """One check of the kit as a test item (``check`` ``level``: the level reached)."""

    def __init__(self, *, check: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        report = _report(self.config)
        if self.check == "level":
            wanted = self.config.getoption("dativo_level")
            if not at_least(report.level, wanted):
                failed = "; ".join(c.line for c in report.failures) or "checks that earn it were skipped"
                raise CheckFailed(f"level: {report.level or 'none (not compatible)'} where {wanted} is required: {failed}")
            return
        try:
            found = report.check(self.check)
        except KeyError:
            pytest.skip(f"{self.check}: did not run for this plugin")
        if found.status == "skip":
            pytest.skip(found.line)
        if found.status == "fail":
            raise CheckFailed(found.line)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    implementation = config.getoption("dativo_impl")
    if not implementation:
        return
    kind = config.getoption("dativo_kind")
    names = CHECKS[kind] if kind else list(dict.fromkeys([*CHECKS["reader"], *CHECKS["writer"]]))
    for name in [*names, "level"]:
        node = f"dativo-kit[{implementation}]::{name}"
        items.append(KitItem.from_parent(session, name=node, nodeid=node, check=name))


@pytest.fixture
def dativo_kit(tmp_path: Path) -> Callable[..., KitReport]:
    """``dativo_kit(IMPL, **run_kit_arguments)`` runs the kit (see :func:`dativo.kit.run_kit`)."""

    def run(implementation: Any, **kwargs: Any) -> KitReport:
        kwargs.setdefault("work_dir", tmp_path)
        return run_kit(implementation, **kwargs)

    return run


__all__ = ["CheckFailed", "KitItem", "dativo_kit"]
