"""Fixtures of the executor tests: the session's Ray cluster (started only by the tests that ask for it), and
the check that bubblewrap works here (for sandboxed plugins on workers)."""

from __future__ import annotations

import pytest

from tests.fixtures.ray_cluster import ray_cluster
from tests.plugins import sandboxing

__all__ = ["ray_cluster", "working_bwrap"]


@pytest.fixture
def working_bwrap(request: pytest.FixtureRequest) -> None:
    """Fail (under CI) or skip (elsewhere) unless bubblewrap can start a sandbox on this machine."""
    sandboxing.working_bwrap(request.node)
