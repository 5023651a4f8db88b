"""Keeping secrets out of logs, errors and reports.

Every value that came into a job through ``${VAR}`` or ``${file:PATH}`` is registered here, and every
message Dativo shows a person passes through :func:`redact`. Passwords written inline in a libpq URI or
key/value string are masked too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_SECRET_LENGTH = 3
_MIN_LINE_LENGTH = 4  # one line of a multi-line secret (a PEM key): shorter lines are not worth masking

# The lookbehind starts a scheme only where a run of scheme characters starts: without it, every position of a
# long word is tried and the match is quadratic in the line's length (a plugin's stderr has long lines).
# The password runs to the last '@' of the URI (libpq takes a raw '@' inside a password).
_URI_PASSWORD = re.compile(
    r"(?P<scheme>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^\s]+)@(?=[^@\s]*(?:\s|$))"
)
# key=value (libpq, URLs, env) always; "key: value" when the value is quoted, follows without a space, or
# is more than letters: "secret: No such file" is prose, "token: abc123" is not.
_KV_PASSWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|secret|secret_access_key|token)[\"']?"
    r"(?:\s*=\s*|:(?=\S)|:\s*(?=[\"'])|:\s+(?=[^\s,;&}]*[^A-Za-z\s,;&}])))"
    r"(?P<pw>'[^']*'|\"[^\"]*\"|[^\s,;&}]+)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: set[str] = set()


def encodings(value: str) -> set[str]:
    """Every form in which ``value`` may reach a message.

    Raw and line by line (a multi-line secret is logged line by line), each also JSON-, repr- and
    URL-encoded, and JSON of repr and repr of JSON (an error quoting a path, inside a ``--json`` report).
    """
    lines = {line.strip() for line in value.splitlines() if len(line.strip()) >= _MIN_LINE_LENGTH}
    forms: set[str] = set()
    for part in {value, *lines}:
        for text in (part, repr(part)[1:-1]):
            forms |= {text, json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
            forms.add(repr(json.dumps(text, ensure_ascii=False)[1:-1])[1:-1])
        forms |= {quote(part, safe=""), quote(part), quote_plus(part)}
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def register_inline(text: str) -> None:
    """Register the passwords written inline in ``text`` (a URI's ``user:password@``, ``password=…``).

    The pieces of a URI password around a raw ``@`` are registered too: a driver that splits the URI at the
    first ``@`` shows the rest as part of the host name.
    """
    if "@" not in text and "=" not in text:
        return
    for match in _URI_PASSWORD.finditer(text):
        password = match["pw"]
        for piece in {password, *password.split("@")}:
            register(piece)
    for match in _KV_PASSWORD.finditer(text):
        register(match["pw"].strip("'\""))


def register(value: str) -> None:
    """Remember ``value`` as a secret, so :func:`redact` masks it (in every encoding) from now on."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        forms = encodings(value)
        with _lock:
            _secrets.update(forms)


def redact(text: str) -> str:
    """Return ``text`` with every registered secret and every inline password masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}:{MASK}@", text)
    return _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def neutralize(text: str) -> str:
    """``text`` with terminal control characters (ANSI/OSC escapes, bells …) shown as ``\\xNN``, never sent.

    Plugins choose names, messages and stderr lines; none of it may move the cursor, retitle the terminal
    or hide what is printed next.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def shown(text: str) -> str:
    """What a person may be shown of ``text``: secrets masked and control characters neutralized."""
    return neutralize(redact(text))


class RedactingFilter(logging.Filter):
    """A logging filter that redacts (and neutralizes) every record before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = shown(record.getMessage())
        record.args = None
        return True
