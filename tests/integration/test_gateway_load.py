"""The gateway under sustained load (wrk on loopback, reads and authenticated writes mixed) answers
every request with a 2xx: no 5xx, no dropped connections. Throughput and latency are measured by
benchmarks/gateway_load.py, not asserted here."""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks.gateway_load import load


def test_no_errors_under_load(redis_url: str):
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is not installed (scripts/test-tools.sh installs it)")
        pytest.skip("wrk is not installed (scripts/test-tools.sh installs it)")
    result = load(seconds=10, connections=16, database_url=None, redis_url=redis_url)
    assert result.requests > 100 and result.non_2xx == 0 and result.socket_errors == 0, result.line()
