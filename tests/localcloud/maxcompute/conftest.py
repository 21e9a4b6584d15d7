"""A local MaxCompute server per test module, and pyodps entries on it."""

from __future__ import annotations

import pytest
from odps import ODPS

from localcloud.maxcompute.server import LocalMaxComputeServer

ACCESS_KEY_ID, ACCESS_KEY_SECRET = "LTAImaxcomputetest", "maxcompute-test-secret"
PROJECT, REGION = "image_search_test", "cn-hangzhou"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalMaxComputeServer(tmp_path_factory.mktemp("maxcompute"), {ACCESS_KEY_ID: ACCESS_KEY_SECRET},
                               projects=[PROJECT], region=REGION) as running:
        yield running


@pytest.fixture
def odps(server) -> ODPS:
    """pyodps as a user configures it against a regional endpoint: V4 signatures."""
    server.faults.reset()  # a test that turned a knob leaves the next one a clean server
    return ODPS(ACCESS_KEY_ID, ACCESS_KEY_SECRET, project=PROJECT, endpoint=server.endpoint, region_name=REGION)
