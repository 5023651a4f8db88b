"""The capabilities an untrusted plugin is sandboxed with, and the message that names the one it lacked.

The trust policy (:mod:`dativo.market.policy`) starts an untrusted plugin in the sandbox with exactly what its
manifest declares, and passes that declaration in ``DATIVO_SANDBOX_CAPABILITIES``. When the plugin then fails
reaching for more — a file outside ``read_paths``, a host with no ``network`` granted, an unset secret — the
Python plugin server (:mod:`dativo.plugins.serve`, inside the sandbox) adds :func:`explain`'s sentence to the
error, so the user reads which capability was missing instead of a bare ``FileNotFoundError``.

Standard library only: it is imported inside the sandbox, by the server.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections.abc import Mapping
from typing import Any

ENV = "DATIVO_SANDBOX_CAPABILITIES"
_NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ETIMEDOUT, errno.ECONNRESET}
_WRITE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_QUOTED_PATH = re.compile(r"'(/[^']+)'")


def encode(plugin: str, capabilities: Mapping[str, Any]) -> str:
    """The variable's value: the plugin's name and its declared capabilities, as JSON."""
    return json.dumps({"plugin": plugin, **capabilities}, sort_keys=True)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _listed(values: Any) -> str:
    return ", ".join(map(str, values)) if values else "nothing"


def explain(exc: BaseException, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """Which declared capability ``exc`` ran into, as ``(sentence, hint)``; ``None``: not sandboxed so, or unknown.

    Args:
        exc: What the plugin raised.
        env: The environment (default: this process's).
    """
    env = os.environ if env is None else env
    raw = env.get(ENV)
    if not raw:
        return None
    try:
        declared = json.loads(raw)
    except ValueError:
        return None
    plugin = declared.get("plugin", "the plugin")
    head = f"the sandbox gives {plugin} only the capabilities its manifest declares"
    hint = (f"Declare what {plugin} needs in its dativo-plugin.toml [capabilities] (its publisher packs and signs "
            "it again), or trust it: install it from a trusted publisher (dativo plugin install --trust KEY) or set "
            "plugins.policy.unsigned: allow.")
    for error in _chain(exc):
        if isinstance(error, socket.gaierror) or (isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS):
            return f"{head}, and capability network ({_listed(declared.get('network'))}) does not reach there", hint
        if isinstance(error, OSError):
            path = error.filename if isinstance(error.filename, str) else None
            match = _QUOTED_PATH.search(str(error)) if path is None else None
            path = path or (match.group(1) if match else None)
            if path is None:
                continue
            if error.errno in _WRITE_ERRNOS:
                return (f"{head}, and capability write_paths ({_listed(declared.get('write_paths'))}) does not "
                        f"include {path}"), hint
            return (f"{head}, and capability read_paths ({_listed(declared.get('read_paths'))}) does not include "
                    f"{path}"), hint
        if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str):
            name = error.args[0]
            if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) and name not in env:  # an environment variable, by convention
                return (f"{head}, and capability secrets ({_listed(declared.get('secrets'))}) does not include "
                        f"{name}"), hint
    return None
