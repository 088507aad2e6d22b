"""The trainer's ops endpoints (rank 0 only): ``/healthz``, ``/readyz`` (Redis, gateway), ``/metrics``.

The metrics live in a registry of this process; the gauges of the run's stream (backlog, pending)
are read from Redis at scrape time, so they are current even while an update runs for minutes.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections import Counter as Tally
from collections.abc import Iterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis

from shared.observability import http_check, ops_app
from shared.settings import TrainerSettings
from shared.streams import EpisodeStream

GROUP_OUTCOMES = {
    "groups_trained": "trained",
    "dropped_stale": "dropped_stale",
    "dropped_no_signal": "dropped_no_signal",
}
"""Keys of RunTrainer.counts -> the ``outcome`` label of ``pop_trainer_groups_total``."""


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.steps = Counter(
            "pop_trainer_steps", "Updates made (checkpointed and acknowledged).", ["run_id"], registry=r
        )
        self.groups = Counter("pop_trainer_groups", "Groups consumed, by outcome.", ["run_id", "outcome"], registry=r)
        self.step_seconds = Histogram(
            "pop_trainer_step_seconds",
            "Wall time of a step: wait for groups, update, checkpoint, acknowledge.",
            buckets=(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0),
            registry=r,
        )
        self.phase_seconds = Histogram(
            "pop_trainer_phase_seconds",
            "Where a step's time goes: wait (for fresh groups: the trainer idles), update, checkpoint "
            "(write, acknowledge, report) and swap (the generator's hot-swap, which the trainer waits on).",
            ["phase"],
            buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "pop_trainer_tokens_per_second", "Completion tokens per second of the latest update.", registry=r
        )
        self.mean_reward = Gauge("pop_trainer_mean_reward", "Mean reward of the latest step.", ["run_id"], registry=r)
        self.backlog = Gauge(
            "pop_trainer_queue_backlog", "Stream entries not yet delivered to the trainer.", ["run_id"], registry=r
        )
        self.pending = Gauge(
            "pop_trainer_queue_pending", "Entries delivered but not yet acknowledged.", ["run_id"], registry=r
        )
        self.policy_version = Gauge(
            "pop_trainer_policy_version", "Newest policy version the trainer wrote.", ["run_id"], registry=r
        )
        self.stream: EpisodeStream | None = None
        """The stream of the run being trained, read at each scrape."""

    def watch(self, stream: EpisodeStream | None) -> None:
        """Read ``stream`` at each scrape; None (the run ended) drops the old run's queue gauges."""
        old, self.stream = self.stream, stream
        if old is not None and old is not stream:
            for gauge in (self.backlog, self.pending):
                with contextlib.suppress(KeyError):
                    gauge.remove(old.run_id)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds.labels(name).observe(time.perf_counter() - started)

    async def refresh(self) -> None:
        stream = self.stream
        if stream is not None:
            self.backlog.labels(stream.run_id).set(await stream.backlog())
            self.pending.labels(stream.run_id).set(await stream.pending())

    def step(
        self,
        run_id: str,
        version: int,
        seconds: float,
        before: Tally[str],
        after: Tally[str],
        update: dict[str, float],
        rewards: list[float],
    ) -> None:
        """One finished step; ``before``/``after`` are the run's counts around it."""
        self.steps.labels(run_id).inc()
        for key, outcome in GROUP_OUTCOMES.items():
            self.groups.labels(run_id, outcome).inc(max(0, after[key] - before[key]))
        self.step_seconds.observe(seconds)
        if "tokens_per_second" in update:
            self.tokens_per_second.set(update["tokens_per_second"])
        if rewards:
            self.mean_reward.labels(run_id).set(statistics.fmean(rewards))
        self.policy_version.labels(run_id).set(version)


def trainer_ops(settings: TrainerSettings, redis: Redis, metrics: TrainerMetrics) -> FastAPI:
    checks = {"redis": redis.ping, "gateway": http_check(f"{settings.gateway_url.rstrip('/')}/healthz")}
    return ops_app("trainer", metrics.registry, checks, refresh=metrics.refresh)
