"""The conformance kit: ``dativo plugin test IMPL``, the checks every reader and writer must pass to be listed.

Use it from the command line (``dativo plugin test``, docs/plugins/kit.md), from Python (:func:`run_kit`), or
from pytest (``pytest -p dativo.kit.pytest_plugin --dativo-impl IMPL``, or the ``dativo_kit`` fixture).

Module map, lowest layer first; a module imports only those above it (and the rest of ``dativo``, through its
public names: the plugin host resolves and starts plugins, the kit loads nothing itself):

- :mod:`.checks` — one named check and its outcome; the checklist that runs them.
- :mod:`.rows` — a reader's output as a closable stream; rows as digests, compared as multisets.
- :mod:`.perf` — the performance line (rows/s, MB/s, peak RSS, CPU s).
- :mod:`.subject` — the plugin under test: parsing ``IMPL``, configuring it from a job or options, the
  kit's session (plugin host, temporary folder, captured logs), broken configurations, temporary targets.
- :mod:`.common` — the checks every plugin gets (options, check, broken configuration, secrets).
- :mod:`.readers` — the reader checks; :mod:`.writers` — the writer checks.
- :mod:`.differential` — ``--against default``: the plugin and the built-in, row for row.
- :mod:`.report` — levels (``compatible``, ``certified``, ``sandbox-safe``), JSON and Markdown.
- :mod:`.runner` — :func:`run_kit`, the order of it all.
- :mod:`.command` — the ``dativo plugin test`` command; :mod:`.pytest_plugin` — the pytest plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dativo.kit.checks import Check, UsageError
    from dativo.kit.report import LEVELS, KitReport
    from dativo.kit.runner import run_kit

_EXPORTS = {"Check": "checks", "UsageError": "checks", "LEVELS": "report", "KitReport": "report",
            "run_kit": "runner"}


def __getattr__(name: str) -> Any:
    # loaded on first use: the CLI imports dativo.kit.command at start-up, and must not pay for the kit
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dativo.kit.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dativo.kit' has no attribute {name!r}")


__all__ = ["LEVELS", "Check", "KitReport", "UsageError", "run_kit"]
