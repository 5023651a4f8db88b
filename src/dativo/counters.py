"""Counts a plugin keeps of what it met (invalid values read as null, records rejected …), for the run report.

A plugin calls :meth:`dativo.api.Context.count`; the run report shows the totals under ``counters``, per side
(``{"reader": {"rejected_records": 2}}``). They cross every boundary the plugin does: an out-of-process plugin
returns its own in the result of ``close``, a split on a Ray worker in its result. Only the attempt that
committed is counted: a failed attempt's counts go with its files.

Names and values come from plugin code, so both are bounded: a name is 1-100 letters, digits and ``_ . : / -``
(starting with a letter or digit), a count an integer from 0 to 2^63 - 1; at most :data:`MAX_COUNTERS` names a side,
and a total stops at 2^63 - 1.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

MAX_COUNTERS = 100
"""Distinct counter names one plugin may keep; later new names are dropped (with one warning)."""
MAX_VALUE = 2**63 - 1
"""The most a counter holds (what JSON readers and Iceberg's ``long`` take)."""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/\-]{0,99}")


class Counters:
    """Named non-negative counts that several threads add to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._full_warned = False

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name``.

        Raises:
            ValueError: ``name`` is not a counter name or ``n`` not an integer from 0 to 2^63 - 1.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"counter name {name!r:.120} is not 1-100 letters, digits and _ . : / - "
                             "(starting with a letter or digit)")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_VALUE:
            raise ValueError(f"counter {name}: {n!r:.40} is not an integer from 0 to 2^63 - 1")
        with self._lock:
            if name not in self._values and len(self._values) >= MAX_COUNTERS:
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("more than %d counter names: counter %s and later new names are not kept",
                                MAX_COUNTERS, name)
                return
            self._values[name] = min(MAX_VALUE, self._values.get(name, 0) + n)

    def merge(self, values: Any, source: str) -> None:
        """Add counts received from elsewhere (a plugin process, a worker): entries that are not a counter name
        with a count are dropped, with one warning naming ``source``."""
        if not values:
            return
        if not isinstance(values, Mapping):
            log.warning("%s sent counters that are not an object; they are ignored", source)
            return
        dropped = 0
        for name, n in values.items():
            try:
                self.add(name, n)
            except ValueError:
                dropped += 1
        if dropped:
            log.warning("%s sent %d counter(s) that are not a name with a count; they are ignored",
                        source, dropped)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (a plugin may hand its context to a process pool): the counts, not the lock. What a copy
        counts in another process stays there."""
        return {"values": self.snapshot(), "full_warned": self._full_warned}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = threading.Lock()
        self._values = dict(state["values"])
        self._full_warned = bool(state["full_warned"])

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by name."""
        with self._lock:
            return dict(sorted(self._values.items()))


def counters_of(reader: Any, writer: Any) -> dict[str, Counters]:
    """The counters of a loaded reader and writer (anything with the ``ctx`` it was given), by role."""
    out: dict[str, Counters] = {}
    for role, loaded in (("reader", reader), ("writer", writer)):
        ctx = getattr(loaded, "ctx", None)
        out[role] = ctx.counters if ctx is not None else Counters()
    return out


def counted(reader: Any, writer: Any) -> dict[str, dict[str, int]]:
    """What a loaded reader and writer counted, as the run report shows it (a side that counted nothing is
    left out)."""
    return {role: values for role, c in counters_of(reader, writer).items() if (values := c.snapshot())}
