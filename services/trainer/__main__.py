"""``python -m services.trainer``: claim pending runs from the gateway and train them, one at a time.

Data parallel: ``accelerate launch [--config_file deploy/accelerate/ddp.yaml] -m services.trainer``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from redis.asyncio import Redis

from services.trainer.loop import RunTrainer
from services.trainer.ops import TrainerMetrics, trainer_ops
from services.trainer.parallel import Message, Replicas, follow, start
from shared.clients.gateway import GatewayClient
from shared.config import RunConfig
from shared.logs import setup_logging
from shared.observability import serve_ops
from shared.settings import TrainerSettings, reveal, weight_sync_refusal

log = logging.getLogger("trainer")


async def serve(settings: TrainerSettings, replicas: Replicas | None = None) -> None:
    """Train runs as they come, with the ops endpoints beside; a port it cannot bind stops it."""
    gateway = GatewayClient(settings.gateway_url, timeout_s=300.0, token=reveal(settings.gateway_token))
    redis = Redis.from_url(settings.redis_url)
    metrics = TrainerMetrics()
    ops = trainer_ops(settings, redis, metrics)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve_ops(ops, settings.host, settings.port))
            tasks.create_task(claim_and_train(settings, gateway, redis, replicas, metrics))
    finally:
        if replicas is not None:
            replicas.broadcast(Message("stop"))
        await gateway.aclose()
        await redis.aclose()


async def claim_and_train(
    settings: TrainerSettings,
    gateway: GatewayClient,
    redis: Redis,
    replicas: Replicas | None,
    metrics: TrainerMetrics,
) -> None:
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
        await RunTrainer(run, settings, gateway, redis, replicas, metrics).train()


def offline(argv: list[str]) -> None:
    """``python -m services.trainer offline``: the paper's single offline DPO pass over saved groups."""
    from services.trainer.offline import train_offline

    parser = argparse.ArgumentParser(prog="python -m services.trainer offline", description=offline.__doc__)
    parser.add_argument("--config", type=Path, required=True, help="run config YAML (model, trainer.algorithm: dpo)")
    parser.add_argument("--episodes", type=Path, required=True, help="JSONL of episode groups (pop episodes RUN_ID)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoint")
    args = parser.parse_args(argv)
    path, manifest, history = train_offline(RunConfig.from_file(args.config), args.episodes, args.out)
    log.info("offline DPO: %d steps, checkpoint %s (sha256 %s)", len(history), path, manifest.files)


def check_weight_sync(settings: TrainerSettings) -> None:
    """Stop at start, naming the setting, when the weight sync asked for cannot work on this machine."""
    if settings.weight_sync == "disk":
        return
    import torch

    refusal = weight_sync_refusal("POP_TRAINER_WEIGHT_SYNC", settings.weight_sync, torch.cuda.is_available())
    if refusal is not None:
        raise SystemExit(f"trainer: {refusal}")


def main() -> None:
    settings = TrainerSettings()
    setup_logging("trainer", settings.log_level)
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    if sys.argv[1:2] == ["offline"]:
        offline(sys.argv[2:])
        return
    check_weight_sync(settings)
    replicas = start(settings.sharding)  # under ``accelerate launch``: rank 0 serves, the other ranks follow it
    if replicas is not None and not replicas.is_main:
        follow(replicas)
        return
    asyncio.run(serve(settings, replicas))


if __name__ == "__main__":
    main()
