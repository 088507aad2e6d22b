"""Which hosts a service may call on a user's say-so (external judges, teacher endpoints): an
allowlist from settings, so a run config or a grade request cannot aim our requests at arbitrary
hosts inside the network (SSRF)."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


class HostAllowlist:
    """Patterns: a host name (``judge.example.com``), a wildcard (``*.svc.cluster.local``), an address
    (``10.0.0.7``) or a network (``10.0.0.0/8``). Matching is on the URL's host as written, case-blind."""

    def __init__(self, patterns: Iterable[str], setting: str) -> None:
        self.patterns = [p.strip().lower() for p in patterns if p.strip()]
        self.setting = setting

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be called, or None when it may."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return f"{url!r} is not an http(s) URL with a host"
        if any(self._matches(host, p) for p in self.patterns):
            return None
        return f"host {host!r} is not allowed: add it to {self.setting}"

    @staticmethod
    def _matches(host: str, pattern: str) -> bool:
        if "/" in pattern:
            try:
                return ipaddress.ip_address(host) in ipaddress.ip_network(pattern, strict=False)
            except ValueError:
                return False
        return fnmatch.fnmatchcase(host, pattern)
