"""``python -m services.trainer``: claim pending runs from the gateway and train them, one at a time."""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from services.trainer.loop import RunTrainer
from shared.clients.gateway import GatewayClient
from shared.logs import setup_logging
from shared.settings import TrainerSettings

log = logging.getLogger("trainer")


async def serve(settings: TrainerSettings) -> None:
    gateway = GatewayClient(settings.gateway_url, timeout_s=300.0)
    redis = Redis.from_url(settings.redis_url)
    try:
        while True:
            try:
                run = await gateway.claim_run(settings.consumer_name)
            except Exception as exc:
                log.warning("gateway unreachable: %r", exc)
                run = None
            if run is None:
                await asyncio.sleep(settings.poll_interval_s)
                continue
            log.info("claimed run %s (%s)", run.id, run.name)
            await RunTrainer(run, settings, gateway, redis).train()
    finally:
        await gateway.aclose()
        await redis.aclose()


def main() -> None:
    settings = TrainerSettings()
    setup_logging("trainer", settings.log_level)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
