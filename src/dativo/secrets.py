"""Keeping secrets out of logs, errors and reports.

Every value that came into a job through ``${VAR}`` or ``${file:PATH}`` is registered here, and every
message Dativo shows a person passes through :func:`redact`. Passwords written inline in a libpq URI or
key/value string are masked too.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_MIN_SECRET_LENGTH = 3

# The lookbehind starts a scheme only where a run of scheme characters starts: without it, every position of a
# long word is tried and the match is quadratic in the line's length (a plugin's stderr has long lines).
_URI_PASSWORD = re.compile(
    r"(?P<scheme>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s]+)@"
)
_KV_PASSWORD = re.compile(r"(?P<key>\b(?:password|passwd|pwd|secret|secret_access_key|token)\s*[=:]\s*)(?P<pw>'[^']*'|\"[^\"]*\"|[^\s,;&}]+)", re.IGNORECASE)

_lock = threading.Lock()
_secrets: set[str] = set()


def register(value: str) -> None:
    """Remember ``value`` as a secret, so :func:`redact` masks it from now on."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and every inline password masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}:{MASK}@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
