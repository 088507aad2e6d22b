"""The outbound host allowlist: names, wildcards, addresses and networks; everything else refused."""

from __future__ import annotations

import pytest

from shared.hosts import HostAllowlist

ALLOW = HostAllowlist(["judge.example.com", "*.svc.cluster.local", "10.0.0.0/8", "127.0.0.1"], "POP_X_ALLOWED_HOSTS")


@pytest.mark.parametrize(
    "url",
    [
        "http://judge.example.com:8100",
        "https://JUDGE.example.com/v1",
        "http://judge.pop.svc.cluster.local:8100",
        "http://10.1.2.3:8100",
        "http://127.0.0.1:9/v1",
    ],
)
def test_allowed(url: str):
    assert ALLOW.refusal(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://judge.example.com.evil.net",
        "http://evil.net/?judge.example.com",
        "http://svc.cluster.local.evil.net",
        "http://11.0.0.1",
        "http://localhost:8100",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "not a url",
    ],
)
def test_refused(url: str):
    reason = ALLOW.refusal(url)
    assert reason is not None and ("POP_X_ALLOWED_HOSTS" in reason or "not an http(s) URL" in reason)


def test_empty_allows_nothing():
    assert HostAllowlist([], "S").refusal("http://127.0.0.1") is not None
