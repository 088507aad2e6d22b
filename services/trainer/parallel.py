"""Data parallelism: the same trainer under ``accelerate launch`` on several devices.

Rank 0 is the trainer the other services see: it claims runs, reads the stream, checkpoints,
acknowledges, reports and swaps, so the stream keeps one consumer and its exactly-once accounting.
Every rank holds a replica (``sharding: replicate``, DDP), or a shard of the weights, gradients and
optimizer state (``sharding: fsdp``, services/trainer/sharding.py). Rank 0 broadcasts what to load,
each step's groups and when to join a collective save; each rank computes the loss of its share,
weighted by its share of the loss's units, so the reduced gradient equals the one-process gradient.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch

from shared.config import TrainerConfig
from shared.schemas import EpisodeGroup

log = logging.getLogger(__name__)
Sharding = Literal["replicate", "fsdp"]


@dataclass
class Message:
    """What rank 0 tells the other ranks; they do the same, in the same order."""

    kind: Literal["load", "restore", "update", "gather", "save_state", "release", "stop"]
    model: str = ""
    trainer: TrainerConfig | None = None
    answer_tokens: int = 0
    weights: Path | None = None
    """``load``: a Hugging Face folder to start from; ``restore`` / ``save_state``: a resumable state's folder."""
    groups: list[EpisodeGroup] = field(default_factory=list)


class Replicas:
    """The process group of one data-parallel trainer."""

    def __init__(self, accelerator: Any, sharding: Sharding = "replicate") -> None:
        self.accelerator = accelerator
        self.rank, self.world = int(accelerator.process_index), int(accelerator.num_processes)
        self.sharded = sharding == "fsdp"
        # DCP's background writes plan over their own gloo group, never interleaved with training's collectives.
        self.checkpoint_group: Any = torch.distributed.new_group(backend="gloo")

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

    def most(self, count: int) -> int:
        """The largest per-rank count: sharded ranks must run as many forwards as each other (each gathers)."""
        value = torch.tensor([count], dtype=torch.int64, device=self.accelerator.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return int(value.item())


def start(sharding: Sharding = "replicate") -> Replicas | None:
    """A process group when launched with several processes (``accelerate launch``, torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator, InitProcessGroupKwargs

    # Followers wait in a broadcast until rank 0 claims a run, which may take hours: no 30-minute timeout.
    wait = InitProcessGroupKwargs(timeout=timedelta(days=7))
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[wait])
    replicas = Replicas(accelerator, sharding)
    log.info("data parallel: rank %d of %d on %s (%s)", replicas.rank, replicas.world, accelerator.device, sharding)
    return replicas


def follow(replicas: Replicas) -> None:
    """Ranks above 0: load what rank 0 loads, take their share of every update and their part of every
    collective save, until told to stop."""
    from services.trainer import sharding, state
    from services.trainer.policy import Policy

    policy: Policy | None = None
    saving: Future[Any] | None = None
    while True:
        message = replicas.broadcast()
        if message.kind == "stop":
            if saving is not None:
                saving.result()
            return
        if message.kind == "release":
            policy = None
        elif message.kind == "load":
            assert message.trainer is not None
            policy = Policy(message.model, message.trainer, message.answer_tokens, message.weights, replicas)
        elif policy is None:
            raise RuntimeError(f"rank 0 sent {message.kind!r} before a policy was loaded")
        elif message.kind == "restore":
            assert message.weights is not None
            state.load(policy.model, policy.optimizer, message.weights, replicas.checkpoint_group)
        elif message.kind == "update":
            result = policy.update(message.groups)
            log.info("rank %d: update over %d groups, loss %.4f", replicas.rank, len(message.groups), result.loss)
        elif message.kind == "gather":
            sharding.full_state_dict(policy.model)  # rank 0 keeps the whole; ours is empty
        elif message.kind == "save_state":
            assert message.weights is not None
            if saving is not None:
                saving.result()  # one state in flight, as on rank 0
            saving = state.save_async(policy.model, policy.optimizer, message.weights, replicas.checkpoint_group)
