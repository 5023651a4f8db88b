"""The message that names the capability a sandboxed untrusted plugin lacked (dativo.market.capabilities)."""

from __future__ import annotations

import errno
import socket

from dativo.market import capabilities

DECLARED = {capabilities.ENV: capabilities.encode("orders_demo", {
    "network": [], "read_paths": ["data"], "write_paths": ["out"], "secrets": ["TOKEN"], "memory_mb": 1024})}


def test_a_file_outside_read_paths() -> None:
    sentence, hint = capabilities.explain(FileNotFoundError(errno.ENOENT, "No such file", "/srv/secret.txt"), DECLARED)
    assert sentence.endswith("capability read_paths (data) does not include /srv/secret.txt")
    assert "dativo-plugin.toml [capabilities]" in hint and "plugins.policy.unsigned: allow" in hint


def test_a_write_outside_write_paths() -> None:
    sentence, _ = capabilities.explain(OSError(errno.EROFS, "Read-only file system", "/srv/x"), DECLARED)
    assert "capability write_paths (out) does not include /srv/x" in sentence


def test_a_path_only_in_the_message() -> None:  # pyarrow names the file in its text
    error = FileNotFoundError(errno.ENOENT, "Failed to open local file '/srv/a.csv'")
    assert "read_paths (data) does not include /srv/a.csv" in capabilities.explain(error, DECLARED)[0]


def test_the_network() -> None:
    for error in (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), socket.gaierror(-3, "name resolution")):
        assert "capability network (nothing) does not reach there" in capabilities.explain(error, DECLARED)[0]


def test_a_secret_through_the_cause_chain() -> None:
    try:
        try:
            raise KeyError("API_TOKEN")
        except KeyError as inner:
            raise RuntimeError("no token") from inner
    except RuntimeError as outer:
        sentence, _ = capabilities.explain(outer, DECLARED)
    assert "capability secrets (TOKEN) does not include API_TOKEN" in sentence


def test_nothing_to_say_outside_a_policy_sandbox_or_for_other_errors() -> None:
    assert capabilities.explain(FileNotFoundError(errno.ENOENT, "x", "/a"), {}) is None
    assert capabilities.explain(ValueError("bad"), DECLARED) is None
    assert capabilities.explain(KeyError("id"), DECLARED) is None  # a dict key, not an environment variable
