"""Fixtures of the OpenSearch tests that start builds on the shared local server."""

from __future__ import annotations

import pytest

from tests.pipeline.opensearch.waiting import leave_as_found


@pytest.fixture
def engine(demo_stack):
    """The shared local engine; left as found afterwards (no pending fault, no pause, nothing building)."""
    _, stack, _ = demo_stack
    yield stack.opensearch.engine
    leave_as_found(stack)
