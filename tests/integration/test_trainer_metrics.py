"""A real training step (tiny model, the gateway app on SQLite, real Redis) moves the trainer's metrics:
the loop reports steps, groups by outcome, reward, throughput and version, and drops the run's queue
gauges when the run ends."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from redis.asyncio import Redis

from cli.stack import free_port
from services.gateway.app import create_app
from services.trainer.loop import RunTrainer
from services.trainer.ops import TrainerMetrics
from services.trainer.policy import Policy
from shared.api import RunStatus
from shared.clients.gateway import GatewayClient
from shared.config import RunConfig
from shared.settings import GatewaySettings, TrainerSettings
from shared.streams import EpisodeStream
from tests.integration.groups import make_group


@contextmanager
def gateway(tmp_path: Path, redis_url: str) -> Iterator[str]:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        redis_url=redis_url,
        generator_url="http://127.0.0.1:9",
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the gateway did not start"
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def test_a_training_step_moves_the_trainer_metrics(tmp_path: Path, redis: Redis, redis_url: str):
    config = RunConfig.model_validate(
        {"model": "pop/tiny", "trainer": {"max_steps": 1, "groups_per_step": 1, "swap_after_update": False}}
    )
    policy = await asyncio.to_thread(Policy, "pop/tiny", config.trainer)  # the groups' tokens, from its tokenizer
    with gateway(tmp_path, redis_url) as url:
        client, stream = GatewayClient(url), None
        try:
            created = await client.create_run(config)
            run = await client.claim_run("trainer-metrics")
            assert run is not None and run.id == created.id
            stream = EpisodeStream(redis, run.id)
            await stream.append(make_group(policy, [0.0, 0.0, 0.0], True))  # no signal: dropped
            await stream.append(make_group(policy, [2.0, 0.0, 1.0], True))
            metrics = TrainerMetrics()
            settings = TrainerSettings(
                gateway_url=url, redis_url=redis_url, checkpoint_dir=tmp_path / "ck", consumer_name="trainer-metrics"
            )
            await RunTrainer(run, settings, client, redis, None, metrics).train()
            assert (await client.get_run(run.id)).status is RunStatus.completed
        finally:
            await client.aclose()
            if stream is not None:
                await redis.delete(stream.key)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("pop_trainer_steps_total", run_id=run.id) == 1
    assert sample("pop_trainer_groups_total", run_id=run.id, outcome="trained") == 1
    assert sample("pop_trainer_groups_total", run_id=run.id, outcome="dropped_no_signal") == 1
    assert sample("pop_trainer_groups_total", run_id=run.id, outcome="dropped_stale") == 0
    assert sample("pop_trainer_mean_reward", run_id=run.id) == 1.0
    assert sample("pop_trainer_policy_version", run_id=run.id) == 1
    assert (sample("pop_trainer_tokens_per_second") or 0.0) > 0
    assert sample("pop_trainer_step_seconds_count") == 1
    assert sample("pop_trainer_queue_backlog", run_id=run.id) is None  # the run ended: no stale gauge
