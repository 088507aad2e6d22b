"""``python -m services.selfplay``: feed every running run with scored episode groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from services.selfplay.ops import SelfPlayMetrics, selfplay_ops
from services.selfplay.producer import RunProducer
from shared.api import FinishReport, RunRead, RunStatus
from shared.clients.gateway import GatewayClient
from shared.logs import setup_logging
from shared.observability import serve_ops
from shared.settings import SelfPlaySettings, reveal

log = logging.getLogger("selfplay")


async def start_producer(
    run: RunRead, settings: SelfPlaySettings, redis: Redis, gateway: GatewayClient, metrics: SelfPlayMetrics
) -> RunProducer | None:
    """A producer for ``run``; a run it cannot feed (no corpus, unknown task type) is failed, with why."""
    try:
        # Off the loop: indexing a large corpus the first time takes a while.
        return await asyncio.to_thread(RunProducer, run, settings, redis, metrics)
    except (OSError, ValueError) as exc:  # FileNotFoundError, TaskTypeError, unset API key variable
        log.error("run %s cannot be produced: %s", run.id, exc)
        try:
            await gateway.finish_run(run.id, FinishReport(status=RunStatus.failed, error=f"producer: {exc}"))
        except Exception as report_exc:
            log.warning("could not fail run %s: %r", run.id, report_exc)
        return None


async def serve(settings: SelfPlaySettings) -> None:
    """Supervise the producers, with the ops endpoints beside; a port it cannot bind stops it."""
    gateway = GatewayClient(settings.gateway_url, token=reveal(settings.gateway_token))
    redis = Redis.from_url(settings.redis_url)
    metrics = SelfPlayMetrics()
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve_ops(selfplay_ops(settings, redis, metrics), settings.host, settings.port))
            tasks.create_task(supervise(settings, gateway, redis, metrics))
    finally:
        await gateway.aclose()
        await redis.aclose()


async def supervise(settings: SelfPlaySettings, gateway: GatewayClient, redis: Redis, metrics: SelfPlayMetrics) -> None:
    """Start a producer for each running run and cancel it once the run ends."""
    active: dict[str, tuple[RunProducer, asyncio.Task[None]]] = {}
    try:
        while True:
            try:
                running = {r.id: r for r in (await gateway.list_runs(RunStatus.running)).items}
            except Exception as exc:
                log.warning("gateway unreachable: %r", exc)
                running = {rid: producer.run for rid, (producer, _) in active.items()}
            for run_id, run in running.items():
                if run_id not in active:
                    producer = await start_producer(run, settings, redis, gateway, metrics)
                    if producer is not None:
                        active[run_id] = (producer, asyncio.create_task(producer.run_forever()))
                        log.info("producing for run %s", run_id)
            for run_id in [r for r in active if r not in running]:
                producer, task = active.pop(run_id)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await producer.aclose()
                log.info("run %s ended; producer stopped: %s", run_id, dict(producer.counts))
            metrics.active_runs.set(len(active))
            await asyncio.sleep(settings.poll_interval_s)
    finally:
        for producer, task in active.values():
            task.cancel()
            await producer.aclose()


def main() -> None:
    settings = SelfPlaySettings()
    setup_logging("selfplay", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
