"""Hostile job files, command lines and plugin return values, tried through the real ``dativo`` CLI.

Each test performs the attack, shows that it reached the host (the plugin's value or the file's content is
named in the refusal), and checks that it failed: a clear error and exit code, nothing outside the target
changed, and no secret shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HOSTILE = "tests.fixtures.hostile_input"
ROOT = Path(__file__).resolve().parent.parent


def dativo(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``dativo ARGS`` in its own process, as a user runs it."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "dativo", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def job(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder beside the target that no job may touch."""
    folder = tmp_path / "victimD"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def untouched(victim: Path) -> bool:
    return sorted(p.name for p in victim.iterdir()) == ["precious.txt"] and \
        (victim / "precious.txt").read_text() == "keep me"


# --- names that become paths ----------------------------------------------------------------------


def test_a_dataset_name_cannot_climb_out_of_the_target(tmp_path: Path, victim: Path) -> None:
    path = job(tmp_path, f"""\
        version: 1
        name: climb
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:DatasetNameReader",
                  fallback: fail}}}}
        target: {{type: parquet, path: "out/{{dataset}}", mode: overwrite}}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "'../victimD'" in result.stderr and "dataset name" in result.stderr  # the plugin did return it
    assert untouched(victim)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"split_dataset": "../x"}, "returned a split of dataset '../x'"),
        ({"split_id": "../../x"}, "split id '../../x'"),
    ],
    ids=["other-dataset", "path-id"],
)
def test_a_split_cannot_name_a_path(tmp_path: Path, options: dict, expected: str) -> None:
    path = job(tmp_path, f"""\
        version: 1
        name: splits
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:SplitNameReader",
                  fallback: fail, options: {json.dumps(options)}}}}}
        target: {{type: parquet, path: out/t}}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert expected in result.stderr
    assert not (tmp_path / "x").exists() and not any(tmp_path.parent.glob("x"))


@pytest.mark.parametrize("run_id", ["../../../victimD", "a:b", "a+b", "a/b", ".hidden", ""])
def test_run_ids_are_plain_names(tmp_path: Path, victim: Path, run_id: str) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: ids
        source: {type: csv, path: in.csv}
        target: {type: parquet, path: out/t}
        """)
    result = dativo("run", str(path), "--run-id", run_id, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "is not a valid run id" in result.stderr
    assert untouched(victim) and not (tmp_path / "out").exists()


# --- the job file ---------------------------------------------------------------------------------


def test_a_duplicated_key_cannot_switch_the_sandbox_off(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: dup
        source:
          type: csv
          path: in.csv
          reader:
            type: default
            sandbox:
              enabled: true
              enabled: false
        target: {type: parquet, path: out/t}
        """)
    result = dativo("run", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "key 'enabled' is given twice (first at line 9)" in result.stderr and "line 10" in result.stderr
    assert not (tmp_path / "out").exists()


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    path = job(tmp_path, """\
        version: 1
        name: merge
        defaults: &defaults {type: csv, path: missing.csv}
        source:
          <<: *defaults
          path: in.csv
        target: {type: parquet, path: out/t}
        """)
    result = dativo("check", str(path), cwd=tmp_path)
    assert "given twice" not in result.stderr


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ["version: 1", "name: bomb", 'a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    lines += ["source: {type: csv, path: in.csv}", "target: {type: parquet, path: out/t}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    result = dativo("check", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "expands to more than 100,000 values" in result.stderr


def test_deep_nesting_is_a_config_error_not_an_internal_one(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nname: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    result = dativo("check", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "nested too deeply" in result.stderr and "Internal error" not in result.stderr


@pytest.mark.parametrize("target", ["/dev/zero", "big"])
def test_secret_files_are_bounded(tmp_path: Path, target: str) -> None:
    if target == "big":
        (tmp_path / "big").write_bytes(b"s" * (1 << 20))
    path = job(tmp_path, f"""\
        version: 1
        name: secretfile
        source: {{type: csv, path: "${{file:{target}}}"}}
        target: {{type: parquet, path: out/t}}
        """)
    result = dativo("check", str(path), cwd=tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert ("not a regular file" if target == "/dev/zero" else "larger than 64 KiB") in result.stderr
    assert "sss" not in result.stderr


# --- what is shown -----------------------------------------------------------------------------------


SECRET = 'pa"ss\\wörd-Ω\nsecond-line-of-it'


def test_a_secret_is_masked_in_every_encoding(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(SECRET)
    path = job(tmp_path, """\
        version: 1
        name: leaky
        source: {type: csv, path: "data/${file:secret.txt}/x.csv"}
        target: {type: parquet, path: out/t}
        """)
    plain = dativo("run", str(path), cwd=tmp_path)
    machine = dativo("run", str(path), "--json", cwd=tmp_path)
    assert plain.returncode != 0 and machine.returncode != 0
    output = plain.stdout + plain.stderr + machine.stdout + machine.stderr
    assert "***" in output  # the path with the secret was shown, masked
    for form in (SECRET, json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], "second-line-of-it", 'pa"ss',
                 "pa\\\"ss"):
        assert form not in output, form


def test_a_raw_at_sign_in_a_dsn_password_is_masked(tmp_path: Path) -> None:
    path = job(tmp_path, """\
        version: 1
        name: dsn
        source: {type: postgres, connection: {dsn: "postgresql://app:p@ss-rest@127.0.0.1:1/db"}, tables: [t]}
        target: {type: parquet, path: out/t}
        """)
    result = dativo("check", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "ss-rest" not in result.stdout + result.stderr


def test_ordinary_text_is_not_taken_for_a_secret() -> None:
    from dativo.secrets import redact

    assert redact("secret: No such file or directory") == "secret: No such file or directory"
    assert redact("token: abc123, next") == "token: ***, next"


def test_terminal_escapes_from_a_plugin_never_reach_the_terminal(tmp_path: Path) -> None:
    path = job(tmp_path, f"""\
        version: 1
        name: escapes
        source: {{type: csv, path: x.csv, reader: {{type: custom, implementation: "{HOSTILE}:EscapeReader",
                  fallback: fail}}}}
        target: {{type: parquet, path: out/t}}
        """)
    result = dativo("run", str(path), cwd=tmp_path, env={"TERM": "xterm", "FORCE_COLOR": "1"})
    assert result.returncode == 3
    assert "plugin says hi" in result.stderr  # the message was shown …
    assert "\x1b]" not in result.stderr and "\x07" not in result.stderr and "\x1b[2J" not in result.stderr
    assert "\\x1b]0;pwned" in result.stderr  # … with its escapes made visible
