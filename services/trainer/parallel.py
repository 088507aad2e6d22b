"""Data parallelism: the same trainer under ``accelerate launch`` on several devices.

Rank 0 is the trainer the other services see: it claims runs, reads the stream, checkpoints,
acknowledges, reports and swaps, so the stream keeps one consumer and its exactly-once accounting.
Every rank holds a replica (DDP), or under DeepSpeed ZeRO-1/2 a shard of the optimizer state. Rank
0 broadcasts what to load and each step's groups; each rank computes the loss of its share, weighted
by its share of the loss's units, so the all-reduced gradient equals the one-process gradient.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch

from shared.config import TrainerConfig
from shared.schemas import EpisodeGroup

log = logging.getLogger(__name__)


@dataclass
class Message:
    """What rank 0 tells the other ranks; they do the same, in the same order."""

    kind: Literal["load", "update", "release", "stop"]
    model: str = ""
    trainer: TrainerConfig | None = None
    answer_tokens: int = 0
    weights: Path | None = None
    groups: list[EpisodeGroup] = field(default_factory=list)


class Replicas:
    """The process group of one data-parallel trainer."""

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self.rank, self.world = int(accelerator.process_index), int(accelerator.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, message: Message | None = None) -> Message:
        """Rank 0 sends ``message``; every other rank receives it (blocking until rank 0 sends)."""
        box = [message if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        received = box[0]
        assert isinstance(received, Message)
        return received

    def share(self, groups: list[EpisodeGroup]) -> list[EpisodeGroup]:
        """This rank's groups: round robin, so shares differ in size by at most one."""
        return groups[self.rank :: self.world]

    def total(self, units: float) -> float:
        """The sum over ranks of a per-rank count (the loss's normalizer)."""
        value = torch.tensor([units], dtype=torch.float64, device=self.accelerator.device)
        return float(self.accelerator.reduce(value, reduction="sum").item())


def start() -> Replicas | None:
    """A process group when launched with several processes (``accelerate launch``, torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator, InitProcessGroupKwargs

    # Followers wait in a broadcast until rank 0 claims a run, which may take hours: no 30-minute timeout.
    wait = InitProcessGroupKwargs(timeout=timedelta(days=7))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[wait])
    replicas = Replicas(accelerator)
    log.info("data parallel: rank %d of %d on %s", replicas.rank, replicas.world, accelerator.device)
    return replicas


def follow(replicas: Replicas) -> None:
    """Ranks above 0: load what rank 0 loads and take their share of every update, until told to stop."""
    from services.trainer.checkpoint import load_trainer_state
    from services.trainer.policy import Policy

    policy: Policy | None = None
    while True:
        message = replicas.broadcast()
        if message.kind == "stop":
            return
        if message.kind == "release":
            policy = None
        elif message.kind == "load":
            assert message.trainer is not None
            policy = Policy(message.model, message.trainer, message.answer_tokens, message.weights, replicas)
            state = load_trainer_state(message.weights) if message.weights is not None else None
            if state and "policy" in state:
                policy.load_state(state["policy"])
        elif message.kind == "update":
            if policy is None:
                raise RuntimeError("rank 0 sent an update before a policy was loaded")
            result = policy.update(message.groups)
            log.info("rank %d: update over %d groups, loss %.4f", replicas.rank, len(message.groups), result.loss)
