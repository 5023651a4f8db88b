"""Names that become paths: the one check for every name a plugin, a job file or a user hands the host.

Dataset and split names come from readers, run ids from the command line, file names from writers; the
host builds folders and deletes files from them. A name is accepted only if it cannot leave the folder it
is joined to, whatever the platform: no separators, no ``.``/``..``, no control characters, bounded length.
:func:`join` is the one way the host builds a path from such names: it checks each of them, and for a local
folder also that no link on the way leads out of the root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dativo.errors import ConfigError, PluginFailed

MAX_NAME_LENGTH = 255
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""What a run id may be: it names staging folders and is stored in commits, so it is plain ASCII."""
_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")


class UnsafeName(ValueError):
    """A name that could lead out of the folder it is joined to (see :func:`join`).

    Attributes:
        value: The name that was refused.
        problem: Why (as :func:`name_problem` says it).
    """

    def __init__(self, message: str, value: object, problem: str) -> None:
        super().__init__(message)
        self.value = value
        self.problem = problem


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be one component of a path, or ``None`` if it can."""
    if not isinstance(value, str):
        return f"it is not a string but {type(value).__name__}"
    if not value:
        return "it is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    if value.strip(".") == "" or value.startswith("."):
        return "it starts with a dot"
    if _FORBIDDEN.search(value):
        return "it contains a path separator or a control character"
    return None


def check_plugin_name(value: object, what: str, *, role: str, stage: str) -> str:
    """``value`` if it is a safe name, else the plugin's failure.

    Args:
        value: The name the plugin returned.
        what: What it names, for the message (``dataset name``, ``split id`` …).
        role: ``reader`` or ``writer``.
        stage: The contract method that returned it.

    Raises:
        PluginFailed: Naming the value (escaped) and why it was refused.
    """
    problem = name_problem(value)
    if problem is not None:
        raise PluginFailed(
            f"{stage}() returned the {what} {printable(value)}, which is refused because {problem}",
            role=role,
            stage=stage,
            hint="Names become folder and file names: use letters, digits, '.', '_' and '-', without '/'.",
        )
    return str(value)


def check_run_id(value: str) -> str:
    """``value`` if it is a valid run id.

    Raises:
        ConfigError: It is not one.
    """
    if not RUN_ID.fullmatch(value):
        raise ConfigError(
            f"--run-id {printable(value)} is not a valid run id",
            hint="Use 1 to 128 letters, digits, '_' and '-', starting with a letter or digit.",
        )
    return value


def check_name(value: object, what: str = "name") -> str:
    """``value`` if it is a safe name (see :func:`name_problem`).

    Args:
        value: The name.
        what: What it names, for the message (``run id``, ``file name``, ``dataset name`` …).

    Raises:
        UnsafeName: Naming the value (escaped) and why it was refused.
    """
    problem = name_problem(value)
    if problem is not None:
        raise UnsafeName(f"the {what} {printable(value)} is refused because {problem}", value, problem)
    return str(value)


def join(root: str, *names: object, what: str = "name", local: bool = False) -> str:
    """``root/name/…``: the one way a path is built from names that come from plugins, records or users.

    Args:
        root: The folder the result must stay in (``/``-separated; an S3 ``bucket/prefix`` or a local path).
        names: Path components, each checked by :func:`check_name`.
        what: What the last name is, for the message.
        local: ``root`` is a local folder: the result must also lie inside it once the links on the way are
            resolved (:func:`inside`), so a link planted in the folder cannot redirect the path.

    Raises:
        UnsafeName: A name could leave ``root``, or (local) a link on the way leads out of it.
    """
    last = len(names) - 1
    checked = [check_name(name, what if n == last else "folder name") for n, name in enumerate(names)]
    path = "/".join([root.rstrip("/"), *checked]) if checked else root
    if local and checked and not inside(root, path):
        raise UnsafeName(f"{path} leads out of {root} through a symbolic link", path, "a link leads out")
    return path


def inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """Whether ``path``, without following a final symbolic link, lies within ``root`` (or is it)."""
    base = os.path.realpath(root)
    target = Path(path)
    parent = os.path.realpath(target.parent)
    full = os.path.join(parent, target.name) if target.name not in ("", ".", "..") else os.path.realpath(target)
    return os.path.commonpath([base, full]) == base


def printable(value: object, limit: int = 80) -> str:
    """``value`` as a short, quoted, escape-safe string for messages (no terminal control sequences)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
