"""Secrets never reach a person's screen, a log or a report."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from dativo import secrets
from dativo.secrets import MASK, RedactingFilter, redact
from tests.conftest import Result

PLUGINS = "tests.fixtures.plugins"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_registered_values_are_masked_longest_first() -> None:
    short, long = unique("tok"), ""
    long = short + "-extended"
    secrets.register(short)
    secrets.register(long)
    assert redact(f"a {long} b {short} c") == f"a {MASK} b {MASK} c"


def test_very_short_values_are_not_registered() -> None:
    secrets.register("ab")
    assert redact("table ab, column cab") == "table ab, column cab"


def test_inline_passwords_are_masked() -> None:
    assert redact("postgresql://app:pw-in-uri@db:5432/shop") == f"postgresql://app:{MASK}@db:5432/shop"
    assert redact("host=db user=app password=kv-secret dbname=shop") == f"host=db user=app password={MASK} dbname=shop"
    assert redact("password='quoted secret' x") == f"password={MASK} x"
    assert redact("token: abc123, next") == f"token: {MASK}, next"
    assert redact("nothing to hide here") == "nothing to hide here"


def test_logging_filter_redacts_message_and_arguments() -> None:
    secret = unique("logsecret")
    secrets.register(secret)
    record = logging.LogRecord("dativo", logging.WARNING, __file__, 1, "token %s for %s", (secret, "orders"), None)
    assert RedactingFilter().filter(record) is True
    assert (record.getMessage(), record.args) == (f"token {MASK} for orders", None)


def secret_job(workdir: Path, write_job: Callable[..., Path], token: str, fallback: str) -> Path:
    """A job whose custom reader echoes ``token``; the built-in fallback reads rows of the plugin's schema."""
    (workdir / "data" / "items.csv").write_text("id,name\n1,a\n")
    job = {
        "version": 1,
        "name": "items",
        "source": {
            "type": "csv",
            "path": "data/items.csv",
            "reader": {"type": "custom", "implementation": f"{PLUGINS}:Secretive", "fallback": fallback,
                       "options": {"token": token}},
        },
        "target": {"type": "parquet", "path": "out/items"},
    }
    return write_job(yaml.safe_dump(job, sort_keys=False))


def test_secret_echoed_by_a_failing_plugin_is_masked(workdir, write_job, cli: Callable[..., Result]) -> None:
    secret = unique("env-secret")
    job = secret_job(workdir, write_job, "${DATIVO_TEST_TOKEN}", "fail")
    env = {"DATIVO_TEST_TOKEN": secret}

    result = cli("run", str(job), env=env)
    assert result.exit_code == 3
    assert "login refused for token ***" in result.stderr
    assert secret not in result.output

    result = cli("run", str(job), "--json", env=env)
    report = json.loads(result.stdout)
    assert "login refused for token ***" in report["error"]
    assert secret not in result.output

    result = cli("run", str(job), "--debug", env=env)
    assert "connecting with token ***" in result.stderr  # the plugin's own log line
    assert "Traceback" in result.stderr
    assert secret not in result.output


def test_secret_in_a_fallback_warning_and_report_is_masked(workdir, write_job, cli) -> None:
    secret = unique("file-secret")
    (workdir / "token.txt").write_text(secret + "\n")
    job = secret_job(workdir, write_job, "${file:token.txt}", "default")

    result = cli("run", str(job))
    assert result.exit_code == 0, result.output
    assert "falling back" in result.stderr and "***" in result.stderr
    assert secret not in result.output

    result = cli("run", str(job), "--json")
    report = json.loads(result.stdout)
    assert report["fallback_used"] is True and "token ***" in report["fallback_reason"]
    assert secret not in result.output
