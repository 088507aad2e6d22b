"""A fleet of replicas behind one client: discovery, least-outstanding-requests picking, back-off.

A fleet is named by one string, so every service takes it from the setting it always had:
``http://a:8000,http://b:8000`` (a list), or ``dns+http://generator:8000`` (every address the name
resolves to, re-resolved as replicas come and go: a Kubernetes headless Service or compose's
``--scale``). One plain URL is a fleet of one and behaves exactly as a single client did.

Picking is least outstanding requests (Envoy's ``LEAST_REQUEST``, vLLM's router default): a replica
that is slow, or busy with long answers, gets fewer new requests. A replica that refuses work
(503: not yet brought to the fleet's version) or cannot be reached is benched for a moment, and the
request goes to another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx

DNS_SCHEME = "dns+"
RESOLVE_EVERY_S = 10.0
BENCH_S = 2.0


class NoReplica(Exception):
    """Every replica of the fleet is benched or none resolves."""


def split_urls(spec: str) -> list[str]:
    """The comma-separated entries of a fleet spec, each without a trailing slash."""
    urls = [u.strip().rstrip("/") for u in spec.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no URL in {spec!r}")
    return urls


async def resolve(spec: str) -> list[str]:
    """Every replica URL ``spec`` names now: plain entries as given, ``dns+`` entries one per address."""
    urls: list[str] = []
    for entry in split_urls(spec):
        if not entry.startswith(DNS_SCHEME):
            urls.append(entry)
            continue
        parts = urlsplit(entry[len(DNS_SCHEME) :])
        if parts.hostname is None:
            raise ValueError(f"{entry!r}: no host to resolve")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        for address in sorted({str(info[4][0]) for info in infos}):
            host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
            urls.append(urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, "")).rstrip("/"))
    return list(dict.fromkeys(urls))


@dataclass
class Replica:
    url: str
    outstanding: int = 0
    benched_until: float = 0.0


@dataclass
class Fleet:
    """The replicas ``spec`` names, with their outstanding requests (one event loop's view)."""

    spec: str
    replicas: dict[str, Replica] = field(default_factory=dict)
    _resolved_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if not any(u.startswith(DNS_SCHEME) for u in split_urls(self.spec)):
            self.replicas = {u: Replica(u) for u in split_urls(self.spec)}
            self._resolved_at = float("inf")  # a static list never needs resolving again

    @property
    def dynamic(self) -> bool:
        return self._resolved_at != float("inf")

    @property
    def single(self) -> bool:
        """One fixed endpoint: a plain client, with nowhere else to send a request."""
        return not self.dynamic and len(self.replicas) == 1

    async def refresh(self, force: bool = False) -> list[str]:
        """Re-resolve a ``dns+`` spec (at most every ``RESOLVE_EVERY_S`` unless ``force``); counters survive."""
        if self.dynamic and (force or time.monotonic() - self._resolved_at > RESOLVE_EVERY_S):
            async with self._lock:
                urls = await resolve(self.spec)
                self.replicas = {u: self.replicas.get(u) or Replica(u) for u in urls}
                self._resolved_at = time.monotonic()
        return list(self.replicas)

    async def pick(self) -> Replica:
        """The replica with the fewest outstanding requests among those not benched (ties: at random)."""
        await self.refresh()
        now = time.monotonic()
        ready = [r for r in self.replicas.values() if r.benched_until <= now]
        if not ready:
            if not self.replicas:
                raise NoReplica(f"{self.spec} names no replica now")
            ready = [min(self.replicas.values(), key=lambda r: r.benched_until)]
        least = min(r.outstanding for r in ready)
        return random.choice([r for r in ready if r.outstanding == least])

    def bench(self, replica: Replica, seconds: float = BENCH_S) -> None:
        """Send it nothing new for ``seconds`` (it refused work or could not be reached)."""
        replica.benched_until = time.monotonic() + seconds

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Replica]:
        """Count a request against the replica picked for it while the request runs."""
        replica = await self.pick()
        replica.outstanding += 1
        try:
            yield replica
        finally:
            replica.outstanding -= 1


def with_path(spec: str, path: str) -> str:
    """The same fleet with ``path`` appended to every entry (``/v1`` for OpenAI clients)."""
    return ",".join(f"{url}{path}" for url in split_urls(spec))


def fleet_check(
    spec: str, path: str, headers: Mapping[str, str] | None = None, timeout_s: float = 3.0
) -> Callable[[], Awaitable[None]]:
    """A readiness check that passes while any replica answers ``GET path`` with 2xx."""

    async def check() -> None:
        urls = await resolve(spec)
        failure: Exception = NoReplica(f"{spec} names no replica now")
        async with httpx.AsyncClient(timeout=timeout_s, headers=dict(headers or {})) as client:
            for url in urls:
                try:
                    (await client.get(f"{url}{path}")).raise_for_status()
                    return
                except httpx.HTTPError as exc:
                    failure = exc
        raise failure  # one replica: its own error, as a plain check would name it

    return check
