"""``${…}`` substitution in a job file: environment variables, defaults and secret files.

Every substituted value is a secret from then on (:func:`dativo.secrets.register`): it never appears in
logs, errors or reports, and neither does a password written inline in a connection string.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dativo import secrets
from dativo.errors import ConfigError
from dativo.yamlfile import Located

SUBSTITUTION = re.compile(r"\$\{(?P<body>[^}]*)\}")
"""A ``${…}`` reference."""

MAX_SECRET_FILE_BYTES = 64 * 1024
"""Largest file ``${file:…}`` reads: a secret is a password, a token or a key, never a data file."""


def read_secret_file(file: Path, where: str) -> str:
    """The stripped text of a secret file; its content never appears in an error.

    Raises:
        ConfigError: It is not a regular file, is larger than :data:`MAX_SECRET_FILE_BYTES`, or not UTF-8.
    """
    try:
        with open(file, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"{where}: secret file {file} is not a regular file",
                                  hint="Point ${file:…} at a file that holds the secret.")
            data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot read secret file {file}: {exc.strerror}",
            hint="Check the path and its permissions.",
        ) from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{where}: secret file {file} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB",
                          hint="Point ${file:…} at a file that holds only the secret.")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: secret file {file} is not UTF-8 text", hint="Store the secret as text.") from None


def substitute(value: Any, path: tuple[str, ...], env: Mapping[str, str], base: Path, loc: Located) -> Any:
    """``value`` with every ``${VAR}``, ``${VAR:-default}`` and ``${file:PATH}`` in its strings replaced.

    Substituted values (and passwords written inline) are registered as secrets. ``path`` is where
    ``value`` sits in the job file (for messages), ``base`` the folder relative secret files start at.

    Raises:
        ConfigError: An unset variable, a malformed reference, or a secret file that cannot be read.
    """
    if isinstance(value, dict):
        return {k: substitute(v, (*path, str(k)), env, base, loc) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, (*path, str(i)), env, base, loc) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if "${" not in value:
        secrets.register_inline(value)
        return value

    def replace(match: re.Match[str]) -> str:
        body = match["body"].strip()
        if body.startswith("file:"):
            file = Path(os.path.expanduser(body[5:].strip()))
            file = file if file.is_absolute() else base / file
            resolved = read_secret_file(file, loc.where(path))
        else:
            name, has_default, default = body.partition(":-")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(
                    f"{loc.where(path)}: '${{{body}}}' is not a valid reference",
                    hint="Use ${VAR}, ${VAR:-default} or ${file:/path/to/secret}.",
                )
            if name in env:
                resolved = env[name]
            elif has_default:
                return default  # written in the job file itself: not a secret
            else:
                raise ConfigError(
                    f"{loc.where(path)}: environment variable {name} is not set",
                    hint=f"Export {name}, or write ${{{name}:-default}} to give a default.",
                )
        secrets.register(resolved)
        return resolved

    resolved_value = SUBSTITUTION.sub(replace, value)
    secrets.register_inline(resolved_value)
    return resolved_value
