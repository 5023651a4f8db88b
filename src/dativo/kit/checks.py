"""One named check and its outcome, and the checklist that runs them one after another.

A check is a block of code inside :meth:`Checklist.check`; it passes unless it raises. :class:`Failed` and
:class:`Skipped` say why; a :class:`~dativo.errors.DativoError` or any other exception raised by the plugin
fails the check too, with the exception's first line. The reason of a failure always names the check
(:attr:`Check.line`), so a CI log says what broke without the report.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from dativo.errors import ConfigError, DativoError
from dativo.secrets import shown

Status = Literal["pass", "fail", "skip"]
Group = Literal["contract", "fault", "differential", "sandbox"]
"""What a check counts towards: ``contract`` gives ``compatible``, ``fault`` and ``differential`` give
``certified``, ``sandbox`` gives ``sandbox-safe`` (see :mod:`dativo.kit.report`)."""

MAX_REASON = 400


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """``text`` as one shown line: secrets masked, whitespace collapsed, at most ``limit`` characters."""
    line = " ".join(shown(str(text)).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class UsageError(ConfigError):
    """The kit was asked something it cannot do (a missing job, an IMPL that names nothing …): exit code 2.

    Unlike a plugin's own ``ConfigError``, it ends the kit run instead of failing one check.
    """


class Failed(Exception):
    """The check found the plugin at fault; the message is the reason (one line)."""


class Skipped(Exception):
    """The check cannot run here.

    Args:
        reason: Why (one line).
        blocks: Whether the level this check counts towards is then out of reach (a differential check that
            was not asked for blocks ``certified``; one that has nothing to compare with does not).
    """

    def __init__(self, reason: str, *, blocks: bool = False) -> None:
        super().__init__(reason)
        self.blocks = blocks


@dataclass
class Check:
    """The outcome of one check.

    Attributes:
        name: Its name (``plan-deterministic`` …), stable: tests and CI logs refer to it.
        group: What it counts towards (see :data:`Group`).
        status: ``pass``, ``fail`` or ``skip``.
        reason: One line: what was found (pass), what is wrong (fail), why it did not run (skip).
        seconds: How long it took.
        blocks: For a skip: whether it keeps its group's level out of reach.
        details: JSON-serialisable facts for the report (counts, samples …).
    """

    name: str
    group: Group
    status: Status
    reason: str = ""
    seconds: float = 0.0
    blocks: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        """``name: reason`` (``name [status]: reason`` unless it failed): the line a log shows."""
        tag = "" if self.status == "fail" else f" [{self.status}]"
        return f"{self.name}{tag}: {self.reason}" if self.reason else f"{self.name}{tag}"

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-serialisable data."""
        return {
            "name": self.name,
            "group": self.group,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "blocks_level": self.blocks,
            "details": self.details,
        }


@dataclass
class Outcome:
    """What a running check fills in: the reason it passed, and details for the report."""

    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Checklist:
    """The checks of one kit run, in the order they ran.

    Args:
        secret: A fake secret the kit planted: masked in every reason, whatever the plugin did with it.
    """

    def __init__(self, secret: str | None = None) -> None:
        self.checks: list[Check] = []
        self.secret = secret

    def _reason(self, text: str) -> str:
        line = one_line(text)
        return line.replace(self.secret, "***") if self.secret else line

    @contextmanager
    def check(self, name: str, group: Group = "contract") -> Iterator[Outcome]:
        """Run the block as the check ``name``; record its outcome (the block's exceptions end here)."""
        outcome = Outcome()
        started = time.monotonic()
        status: Status = "pass"
        blocks = False
        try:
            yield outcome
            reason = outcome.reason
        except UsageError:
            raise
        except Skipped as exc:
            status, reason, blocks = "skip", str(exc), exc.blocks
        except Failed as exc:
            status, reason = "fail", str(exc)
        except DativoError as exc:
            status, reason = "fail", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        except Exception as exc:  # a bare exception out of the plugin is itself a finding
            status, reason = "fail", f"the plugin raised a bare {type(exc).__name__} (not a DativoError): {exc}"
        self.checks.append(
            Check(name, group, status, self._reason(reason), time.monotonic() - started, blocks,
                  outcome.details)
        )

    def skip(self, name: str, group: Group, reason: str, *, blocks: bool = False) -> None:
        """Record ``name`` as skipped without running anything."""
        self.checks.append(Check(name, group, "skip", self._reason(reason), 0.0, blocks))

    def get(self, name: str) -> Check | None:
        """The outcome of ``name``, if it ran."""
        return next((c for c in self.checks if c.name == name), None)

    def passed(self, name: str) -> bool:
        """Whether ``name`` ran and passed."""
        check = self.get(name)
        return check is not None and check.status == "pass"

    def require(self, *names: str) -> None:
        """Skip the running check unless every check in ``names`` passed.

        Raises:
            Skipped: Naming the first one that did not.
        """
        for name in names:
            if not self.passed(name):
                check = self.get(name)
                state = "did not run" if check is None else ("failed" if check.status == "fail" else "was skipped")
                raise Skipped(f"needs {name}, which {state}")


__all__ = ["Check", "Checklist", "Failed", "Group", "Outcome", "Skipped", "Status", "UsageError", "one_line"]
