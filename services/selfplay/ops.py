"""The producer's ops endpoints: ``/healthz``, ``/readyz`` (Redis, gateway, generator, judge), ``/metrics``.

The counters are this replica's own (the run's ledger in Redis, served by the gateway, sums every
replica); they let one replica's throughput and rejections be watched apart from the others.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis

from shared.clients.fleet import fleet_check
from shared.observability import http_check, ops_app
from shared.settings import SelfPlaySettings


class SelfPlayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.groups = Counter(
            "pop_selfplay_groups", "Groups put on the stream, by task type.", ["run_id", "task_type"], registry=r
        )
        self.filtered = Counter("pop_selfplay_filtered", "Rejections, by reason.", ["run_id", "reason"], registry=r)
        self.throttled = Counter(
            "pop_selfplay_throttled", "Worker waits because the stream backlog was full.", ["run_id"], registry=r
        )
        self.active_runs = Gauge("pop_selfplay_active_runs", "Runs this producer feeds now.", registry=r)
        self.group_seconds = Histogram(
            "pop_selfplay_group_seconds",
            "Time from draw to a group on the stream (draw, propose, solve, grade, append).",
            buckets=(1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
            registry=r,
        )


def selfplay_ops(settings: SelfPlaySettings, redis: Redis, metrics: SelfPlayMetrics) -> FastAPI:
    checks = {
        "redis": redis.ping,
        "gateway": http_check(f"{settings.gateway_url.rstrip('/')}/healthz"),
        "generator": fleet_check(settings.generator_url, "/v1/models"),
        "judge": http_check(f"{settings.judge_url.rstrip('/')}/healthz"),
    }
    return ops_app("selfplay", metrics.registry, checks)
