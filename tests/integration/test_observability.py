"""shared.observability on real apps, real sockets and a real Redis: request metrics labelled by route
template, readiness naming each dead dependency, and an ops server that leaves the signals alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from cli.stack import free_port
from shared.observability import instrument, metrics_response, ops_app, readiness, serve_ops


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def demo_app() -> FastAPI:
    app = FastAPI()
    instrument(app, "demo")

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, str]:
        if run_id == "missing":
            raise HTTPException(404, "no such run")
        return {"id": run_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/metrics")
    async def metrics() -> Response:
        return metrics_response(app.state.metrics_registry)

    return app


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """``serve_ops`` on a free port in this event loop, until the block ends (then cancelled)."""
    port = free_port()
    task = asyncio.create_task(serve_ops(app, "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            assert not task.done(), task
            with contextlib.suppress(httpx.ConnectError):
                await client.get(f"{url}/healthz")
                break
            await asyncio.sleep(0.05)
    try:
        yield url
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_requests_are_counted_by_route_template_and_unmatched_paths_share_one_label():
    app = demo_app()
    registry: CollectorRegistry = app.state.metrics_registry
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        assert (await client.get("/v1/runs/a")).status_code == 200
        assert (await client.get("/v1/runs/b")).status_code == 200
        assert (await client.get("/v1/runs/missing")).status_code == 404
        assert (await client.post("/v1/runs/a")).status_code == 405
        assert (await client.get("/no/such/path")).status_code == 404
        assert (await client.get("/another/unknown")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        exposition = (await client.get("/metrics")).text

    template = "/v1/runs/{run_id}"
    total = "pop_http_requests_total"
    assert sample(registry, total, service="demo", method="GET", route=template, status="200") == 2
    assert sample(registry, total, service="demo", method="GET", route=template, status="404") == 1
    assert sample(registry, total, service="demo", method="POST", route=template, status="405") == 1
    assert sample(registry, total, service="demo", method="GET", route="unmatched", status="404") == 2
    assert sample(registry, total, service="demo", method="GET", route="/boom", status="500") == 1
    seconds = "pop_http_request_seconds_count"
    assert sample(registry, seconds, service="demo", method="GET", route=template) == 3
    routes = {s.labels["route"] for m in registry.collect() for s in m.samples if "route" in s.labels}
    assert routes == {template, "unmatched", "/boom"}  # no raw paths, and /metrics is not counted
    assert 'pop_http_requests_total{method="GET",route="/v1/runs/{run_id}",service="demo",status="200"} 2.0' in (
        exposition
    )


def test_metrics_response_concatenates_registries():
    one, two = CollectorRegistry(), CollectorRegistry()
    Counter("pop_one", "One.", registry=one).inc(3)
    Counter("pop_two", "Two.", registry=two).inc(5)
    response = metrics_response(one, two)
    body = bytes(response.body).decode()
    assert response.media_type is not None and response.media_type.startswith("text/plain")
    assert "pop_one_total 3.0" in body and "pop_two_total 5.0" in body


async def test_readiness_is_ok_when_every_dependency_answers(redis_url: str):
    redis = Redis.from_url(redis_url)
    try:
        response = await readiness({"redis": redis.ping})
    finally:
        await redis.aclose()
    assert response.status_code == 200
    assert response.body == b'{"status":"ok","checks":{"redis":"ok"}}'


async def test_readiness_names_each_dead_dependency_and_why(redis_url: str):
    live, dead = Redis.from_url(redis_url), Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")

    async def hangs() -> None:
        await asyncio.sleep(30)

    try:
        response: JSONResponse = await readiness({"redis": live.ping, "cache": dead.ping, "slow": hangs}, timeout_s=1.0)
    finally:
        await live.aclose()
        await dead.aclose()
    assert response.status_code == 503
    assert response.media_type == "application/problem+json"
    body = json.loads(bytes(response.body))
    assert body["title"] == "Not ready" and body["status"] == 503
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["cache"].startswith("ConnectionError") or "no answer" in body["checks"]["cache"]
    assert body["checks"]["slow"] == "no answer within 1s"
    assert body["detail"] == f"cache: {body['checks']['cache']}; slow: no answer within 1s"


async def test_ops_app_serves_over_http_without_taking_the_signals(redis_url: str):
    registry = CollectorRegistry()
    Counter("pop_demo_things", "Things.", registry=registry).inc(7)
    redis = Redis.from_url(redis_url)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        async with serving(ops_app("demo", registry, {"redis": redis.ping})) as url, httpx.AsyncClient() as client:
            assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{url}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok"}
            exposition = (await client.get(f"{url}/metrics")).text
            assert "pop_demo_things_total 7.0" in exposition
            assert 'pop_http_requests_total{method="GET",route="/readyz",service="demo",status="200"} 1.0' in exposition
            port = int(url.rsplit(":", 1)[1])
    finally:
        await redis.aclose()
    with socket.socket() as s:  # cancelled: the listening socket is closed
        s.bind(("127.0.0.1", port))


async def test_serve_ops_raises_when_its_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(serve_ops(ops_app("demo", CollectorRegistry(), {}), "127.0.0.1", port), 10)
