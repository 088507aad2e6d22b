"""Calls that must outlive a restart of what they call (the gateway, its database, Redis, the
generator): retried with backoff while the failure is transient, for a bounded time, then raised.

Only idempotent calls go through here: the gateway takes a repeated step report as the same one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_exponential

from shared.clients.http import ServiceError

log = logging.getLogger(__name__)
T = TypeVar("T")


def transient(exc: BaseException) -> bool:
    """Worth trying again: the peer is down or restarting (5xx, 429, no connection), not refusing us."""
    if isinstance(exc, ServiceError):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, httpx.TransportError | RedisConnectionError | RedisTimeoutError)


async def persist(what: str, call: Callable[[], Awaitable[T]], for_s: float) -> T:
    """``call()``, retried while it fails transiently, for up to ``for_s`` seconds."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (%r); retry %d", what, exc, state.attempt_number)

    async for attempt in AsyncRetrying(
        stop=stop_after_delay(for_s),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        retry=retry_if_exception(transient),
        before_sleep=note,
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises")
