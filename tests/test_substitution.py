"""``${…}`` substitution: variables, defaults, secret files, and what becomes a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from dativo.errors import ConfigError
from dativo.secrets import redact
from dativo.substitution import MAX_SECRET_FILE_BYTES, read_secret_file, substitute
from dativo.yamlfile import Located

LOC = Located(None, {})


def test_variables_defaults_and_files_are_substituted_and_registered(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-secret\n")
    value = {"a": "${USER_X}", "b": ["${MISSING:-plain}", "${file:pw}"], "c": 3}
    out = substitute(value, (), {"USER_X": "env-secret"}, tmp_path, LOC)
    assert out == {"a": "env-secret", "b": ["plain", "file-secret"], "c": 3}
    assert redact("env-secret file-secret plain") == "*** *** plain"  # a default is no secret


def test_an_unset_variable_and_a_bad_reference_name_the_yaml_path() -> None:
    with pytest.raises(ConfigError, match="source.path: environment variable NOPE is not set"):
        substitute("${NOPE}", ("source", "path"), {}, Path("."), LOC)
    with pytest.raises(ConfigError, match="is not a valid reference"):
        substitute("${1bad}", ("x",), {}, Path("."), LOC)


def test_inline_passwords_become_secrets_even_without_a_reference() -> None:
    substitute("postgresql://app:p@ss-rest@db/x", ("dsn",), {}, Path("."), LOC)
    assert "ss-rest" not in redact("could not resolve host 'ss-rest@db'")


def test_secret_files_are_regular_small_text_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_secret_file(Path("/dev/zero"), "x")
    (tmp_path / "big").write_bytes(b"a" * (MAX_SECRET_FILE_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 64 KiB") as caught:
        read_secret_file(tmp_path / "big", "x")
    assert "aaa" not in str(caught.value)
    (tmp_path / "bin").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_secret_file(tmp_path / "bin", "x")
