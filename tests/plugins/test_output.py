"""A plugin's output on real pipes: crash reports are logged at ERROR and whole, but never without a limit."""

from __future__ import annotations

import logging
import os

import pytest

from dativo.plugins.output import LOG_LINES_PER_S, TAIL_LINES, PluginOutput


def output_of(
    lines: list[str], caplog: pytest.LogCaptureFixture
) -> tuple[PluginOutput, list[logging.LogRecord]]:
    """Feed ``lines`` to a PluginOutput through real pipes, as a plugin's stderr; return what it logged."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    logger = logging.getLogger("dativo.reader.test-output")
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        output = PluginOutput(os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"), name="test", logger=logger)
        os.close(out_w)
        with os.fdopen(err_w, "wb") as stderr:
            stderr.write("".join(f"{line}\n" for line in lines).encode())
        output.finish()
    return output, [r for r in caplog.records if r.name == logger.name]


def test_a_flood_of_crash_reports_is_still_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    _, records = output_of([f"panic: {i}" for i in range(5000)], caplog)
    plugin_lines = [r for r in records if r.getMessage().startswith("panic: ")]
    assert len(plugin_lines) <= LOG_LINES_PER_S + 4 * TAIL_LINES
    assert all(r.levelno == logging.ERROR for r in plugin_lines)
    assert any("more lines of output were not logged" in r.getMessage() for r in records)


def test_the_tail_names_how_much_it_shows(caplog: pytest.LogCaptureFixture) -> None:
    output, _ = output_of(["", "only line"], caplog)
    assert output.tail_text() == "What the plugin wrote to stderr:\n    only line"
    output, _ = output_of([f"line {i}" for i in range(100)], caplog)
    heading, *lines = output.tail_text().split("\n")
    assert heading == f"The last {TAIL_LINES} of the 100 lines the plugin wrote to stderr:"
    assert lines == [f"    line {i}" for i in range(100 - TAIL_LINES, 100)]
    output, _ = output_of([], caplog)
    assert output.tail_text() == ""
