"""Fixtures of the plugin tests."""

from __future__ import annotations

import pytest

from tests.plugins import sandboxing


@pytest.fixture
def working_bwrap(request: pytest.FixtureRequest) -> None:
    """A bubblewrap that can start a sandbox here (:data:`tests.plugins.sandboxing.needs_bwrap`)."""
    sandboxing.working_bwrap(request.node)
