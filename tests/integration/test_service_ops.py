"""Each service's /healthz, /readyz and /metrics: the judge's app in process, the trainer's and the
producer's ops apps over real HTTP, all on a real Redis, with dependencies that are really down
(closed ports), so readiness must name them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from cli.stack import free_port, wait_http
from services.judge.app import create_app
from services.selfplay.ops import SelfPlayMetrics, selfplay_ops
from services.selfplay.producer import RunProducer
from services.trainer.ops import TrainerMetrics, trainer_ops
from shared.api import RunRead, RunStatus
from shared.config import RunConfig
from shared.schemas import SCHEMA_VERSION, Criterion, GradeRequest, MentionCheck, Rubric, new_id, utcnow
from shared.settings import JudgeSettings, SelfPlaySettings, TrainerSettings
from shared.streams import EpisodeStream
from tests.integration.test_observability import serving
from tests.integration.test_streams import make_group


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_judge_metrics_count_grading_and_readiness_names_a_dead_llm():
    app = create_app(JudgeSettings(llm_base_url=f"{dead_url()}/v1"))
    rubric = Rubric(criteria=[Criterion(name="insulin", weight=1, check=MentionCheck(terms=["insulin"]))])
    body = GradeRequest(document="d", task="What is it?", answers=["insulin", "sugar"], rubric=rubric)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://j") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok", "schema_version": SCHEMA_VERSION}
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
        problem = ready.json()
        assert problem["title"] == "Not ready"
        assert problem["checks"]["llm"].startswith("ConnectError")
        assert problem["detail"] == f"llm: {problem['checks']['llm']}"
        for _ in range(2):  # programmatic criteria only: graded exactly, no LLM call
            assert (await c.post("/v1/grade", json=body.model_dump(mode="json"))).status_code == 200
        stats = (await c.get("/v1/stats")).json()
        parsed = samples((await c.get("/metrics")).text)
    assert stats["groups"] == 2
    assert value(parsed, "pop_judge_groups_total") == 2
    assert value(parsed, "pop_judge_rubrics_total", outcome="written") == 0  # the request carried its rubric
    assert value(parsed, "pop_judge_verdict_calls_total") == 0
    assert value(parsed, "pop_judge_invalid_answers_total") == 0
    get, post = {"service": "judge", "method": "GET"}, {"service": "judge", "method": "POST"}
    assert value(parsed, "pop_http_requests_total", **get, route="/readyz", status="503") == 1
    assert value(parsed, "pop_http_requests_total", **post, route="/v1/grade", status="200") == 2
    assert value(parsed, "pop_http_request_seconds_count", **post, route="/v1/grade") == 2


async def test_trainer_ops_serve_step_and_queue_metrics_and_name_a_dead_gateway(redis: Redis, redis_url: str):
    run_id = f"test-{new_id()}"
    stream = EpisodeStream(redis, run_id)
    await stream.ensure_group()
    for version in range(3):
        await stream.append(make_group(run_id, version))
    await stream.read("trainer-0", 1, 100)  # one delivered, unacknowledged; two not yet delivered
    metrics = TrainerMetrics()
    metrics.watch(stream)
    after = Counter(groups_trained=2, dropped_stale=1, redis_retries=4)
    metrics.step(run_id, 1, 2.0, Counter(), after, {"tokens_per_second": 123.0}, [0.5, 1.5, 1.0])
    metrics.step(run_id, 2, 3.0, after, after + Counter(groups_trained=2, dropped_no_signal=1), {}, [])
    settings = TrainerSettings(redis_url=redis_url, gateway_url=dead_url())
    try:
        async with serving(trainer_ops(settings, redis, metrics)) as url, httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{url}/readyz")
            parsed = samples((await client.get(f"{url}/metrics")).text)
            await stream.ack([d.entry_id for d in await stream.read("trainer-0", 10, 100)])
            later = samples((await client.get(f"{url}/metrics")).text)  # read from Redis at each scrape
            metrics.watch(None)  # the run ended: its queue gauges go
            ended = samples((await client.get(f"{url}/metrics")).text)
    finally:
        await redis.delete(stream.key)
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "ok" and ready.json()["detail"].startswith("gateway: ConnectError")
    run = {"run_id": run_id}
    assert value(parsed, "pop_trainer_steps_total", **run) == 2
    assert value(parsed, "pop_trainer_groups_total", **run, outcome="trained") == 4
    assert value(parsed, "pop_trainer_groups_total", **run, outcome="dropped_stale") == 1
    assert value(parsed, "pop_trainer_groups_total", **run, outcome="dropped_no_signal") == 1
    assert value(parsed, "pop_trainer_step_seconds_count") == 2 and value(parsed, "pop_trainer_step_seconds_sum") == 5
    assert value(parsed, "pop_trainer_tokens_per_second") == 123
    assert value(parsed, "pop_trainer_mean_reward", **run) == 1.0  # the latest step without rewards leaves it
    assert value(parsed, "pop_trainer_policy_version", **run) == 2
    assert value(parsed, "pop_trainer_queue_backlog", **run) == 2
    assert value(parsed, "pop_trainer_queue_pending", **run) == 1
    assert value(later, "pop_trainer_queue_backlog", **run) == 0
    assert value(later, "pop_trainer_queue_pending", **run) == 1  # the first delivery is still unacknowledged
    assert value(ended, "pop_trainer_queue_backlog", **run) is None
    assert value(ended, "pop_trainer_steps_total", **run) == 2


def make_run() -> RunRead:
    config = RunConfig.model_validate({"selfplay": {"seed": 5, "max_doc_words": 200, "max_stream_groups": 1}})
    now = utcnow()
    return RunRead(
        id=new_id(), name="ops", status=RunStatus.running, config=config, step=0, policy_version=0,
        created_at=now, updated_at=now,
    )  # fmt: skip


async def test_selfplay_ops_count_this_replicas_work_and_name_every_dead_dependency(redis: Redis, redis_url: str):
    dead = dead_url()
    settings = SelfPlaySettings(redis_url=redis_url, gateway_url=dead, generator_url=dead, judge_url=dead)
    metrics, run = SelfPlayMetrics(), make_run()
    producer = RunProducer(run, settings, redis, metrics)
    try:
        for _ in range(20):
            await producer.next_document()
        await producer.reject("service_error")
        group = make_group(run.id)
        await producer._made(group)
        await producer.stream.append(group)  # the backlog is full (max_stream_groups: 1): workers wait
        worker = asyncio.create_task(producer._worker())
        await asyncio.sleep(1.3)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        async with serving(selfplay_ops(settings, redis, metrics)) as url, httpx.AsyncClient() as client:
            ready = await client.get(f"{url}/readyz")
            parsed = samples((await client.get(f"{url}/metrics")).text)
    finally:
        await producer.aclose()
        await redis.delete(producer.stream.key)
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["redis"] == "ok"
    assert all(checks[d].startswith("ConnectError") for d in ("gateway", "generator", "judge"))
    assert [part.split(":")[0] for part in ready.json()["detail"].split("; ")] == ["gateway", "generator", "judge"]
    filtered = {k.removeprefix("filtered:"): n for k, n in producer.counts.items() if k.startswith("filtered:")}
    assert filtered["service_error"] >= 1
    for reason, n in filtered.items():
        assert value(parsed, "pop_selfplay_filtered_total", run_id=run.id, reason=reason) == n
    assert value(parsed, "pop_selfplay_groups_total", run_id=run.id, task_type="long_form_qa") == 1
    assert producer.counts["throttled"] >= 2
    assert value(parsed, "pop_selfplay_throttled_total", run_id=run.id) == producer.counts["throttled"]
    assert value(parsed, "pop_selfplay_active_runs") == 0


@pytest.mark.parametrize("service", ["selfplay", "trainer"])
def test_the_service_process_serves_its_ops_port_and_still_stops_on_sigterm(service: str, redis_url: str, tmp_path):
    port, prefix = free_port(), f"POP_{service.upper()}_"
    env = {**os.environ, "REDIS_URL": redis_url, f"{prefix}PORT": str(port), f"{prefix}GATEWAY_URL": dead_url()}
    log = tmp_path / f"{service}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_http(proc, f"http://127.0.0.1:{port}/healthz", 120, service, log)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "ok"
        assert ready.json()["checks"]["gateway"].startswith("ConnectError")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == -signal.SIGTERM  # the default action: the whole service ends at once
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
