"""Prometheus metrics and health probes, the same way in every service.

- ``instrument(app, service) -> CollectorRegistry``: counts and times every request but ``/metrics``
  (``pop_http_requests_total{service,method,route,status}``, ``pop_http_request_seconds{service,method,route}``;
  ``route`` is the route's path template, or "unmatched", so label values stay bounded) in a registry of
  the app's own, also at ``app.state.metrics_registry``: never the global one, since several apps share a
  test process and the generator's global registry is vLLM's. Serve it at your own ``/metrics`` route
  with ``metrics_response(app.state.metrics_registry, *others)``.
- ``readiness(checks, timeout_s) -> JSONResponse``: the ``/readyz`` answer. A check is an async callable
  that raises (or times out) when its dependency is unusable, e.g. ``redis.ping`` or ``http_check(url)``.
  200 ``{"status": "ok", "checks": {...}}``, else 503 with a problem body whose ``detail`` names each failure.
- ``ops_app`` + ``serve_ops``: ``/healthz``, ``/readyz`` and ``/metrics`` for services that are not HTTP
  servers themselves (trainer, producer), served in their own event loop without touching their signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import httpx
import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.problems import problem

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[object]]
UNMATCHED = "unmatched"
REFRESH_TIMEOUT_S = 2.0


class _HTTPMetrics:
    """Pure ASGI (no BaseHTTPMiddleware: it buffers streaming bodies and breaks background tasks)."""

    def __init__(self, app: ASGIApp, service: str, requests: Counter, seconds: Histogram) -> None:
        self.app, self.service, self.requests, self.seconds = app, service, requests, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router records the matched route in the scope: its template bounds the label values.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope["method"]
            self.requests.labels(self.service, method, route, str(status)).inc()
            self.seconds.labels(self.service, method, route).observe(time.perf_counter() - started)


def instrument(app: FastAPI, service: str) -> CollectorRegistry:
    """Count and time every request but ``/metrics``, by route template; returns the app's registry.

    Metrics: ``pop_http_requests_total{service,method,route,status}`` and
    ``pop_http_request_seconds{service,method,route}``; ``route`` is "unmatched" for unknown paths.
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    requests = Counter(
        "pop_http_requests", "HTTP requests answered.", ["service", "method", "route", "status"], registry=registry
    )
    seconds = Histogram(
        "pop_http_request_seconds", "HTTP request latency.", ["service", "method", "route"], registry=registry
    )
    app.state.metrics_registry = registry
    app.add_middleware(_HTTPMetrics, service=service, requests=requests, seconds=seconds)
    return registry


def metrics_response(*registries: CollectorRegistry) -> Response:
    """The Prometheus text exposition of every registry, one after the other."""
    return Response(b"".join(generate_latest(r) for r in registries), media_type=CONTENT_TYPE_LATEST)


async def _failure(check: Check, timeout_s: float) -> str | None:
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g}s"
    except Exception as exc:
        message = str(exc)
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return None


async def readiness(checks: Mapping[str, Check], timeout_s: float = 3.0) -> JSONResponse:
    """Run every check at once, each within ``timeout_s``; 503 names each failing dependency and why."""
    failures = await asyncio.gather(*(_failure(check, timeout_s) for check in checks.values()))
    results = {name: failure or "ok" for name, failure in zip(checks, failures, strict=True)}
    failed = {name: failure for name, failure in zip(checks, failures, strict=True) if failure}
    if not failed:
        return JSONResponse({"status": "ok", "checks": results})
    detail = "; ".join(f"{name}: {why}" for name, why in failed.items())
    return problem(503, "Not ready", detail, checks=results)


def http_check(url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 3.0) -> Check:
    """A check that ``GET url`` answers 2xx."""

    async def check() -> None:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            (await client.get(url, headers=dict(headers or {}))).raise_for_status()

    return check


def ops_app(
    service: str, registry: CollectorRegistry, checks: Mapping[str, Check], refresh: Check | None = None
) -> FastAPI:
    """``/healthz`` (the process serves), ``/readyz`` (its dependencies answer) and ``/metrics``
    (``registry`` plus the ops app's own request metrics). ``refresh``, if given, updates gauges that
    are read from elsewhere (Redis) before each scrape; when it fails the last values are served."""
    app = FastAPI(title=f"POP {service} ops", docs_url=None, redoc_url=None, openapi_url=None)
    own = instrument(app, service)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        return await readiness(checks)

    @app.get("/metrics")
    async def metrics() -> Response:
        if refresh is not None:
            failure = await _failure(refresh, REFRESH_TIMEOUT_S)
            if failure is not None:
                log.warning("%s: metrics not refreshed (%s); serving the last values", service, failure)
        return metrics_response(registry, own)

    return app


class _OpsServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the service. uvicorn's ``serve`` replaces their handlers while it runs
    (``capture_signals``, uvicorn >= 0.29), so a signal would stop the ops server first and reach the
    service (asyncio.run's SIGINT handler, the default SIGTERM action) only after it shut down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_ops(app: FastAPI, host: str, port: int) -> None:
    """Serve ``app`` in the running event loop until cancelled; a port that cannot be bound raises OSError."""
    server = _OpsServer(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits the process when it cannot bind
        raise OSError(f"ops server could not listen on {host}:{port}") from exc
    except asyncio.CancelledError:
        if server.started:  # close the listening socket before we go
            await server.shutdown()
        raise
