"""One rank of the sharded-training tests: two gloo ranks train the tiny model under FSDP2 as the
trainer service does (rank 0 drives, rank 1 follows), write a served version (gathered) and a
resumable state (sharded, DCP), then a fresh pair of sharded policies resumes from it and updates again.
Rank 0 saves what it saw for the test to compare with one process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from services.trainer import sharding, state
from services.trainer.parallel import Message, follow, start
from services.trainer.policy import Policy
from services.trainer.saving import Saver
from shared.config import RunConfig, TrainerConfig
from shared.settings import TrainerSettings
from tests.integration.groups import MIXED_REWARDS, REVERSED_REWARDS, make_group


def full_weights(policy: Policy, saver: Saver) -> dict[str, torch.Tensor]:
    saver._tell(Message("gather"))
    return sharding.full_state_dict(policy.model)


def main(config_json: str, out: str) -> None:
    replicas = start("fsdp")
    assert replicas is not None and replicas.world == 2 and replicas.sharded, "launch with two processes"
    if not replicas.is_main:
        follow(replicas)
        return
    cfg = TrainerConfig.model_validate_json(config_json)
    settings = TrainerSettings(checkpoint_dir=Path(out), served_shard_size="1MB")
    saver = Saver("run", RunConfig(model="pop/tiny", trainer=cfg), settings, replicas)

    policy = Policy("pop/tiny", cfg, replicas=replicas)
    groups = [make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS]
    first = policy.update(groups)
    saver.served(policy, 1, 1, ["1-0"], {})
    saver.begin_state(policy, 1, {"step": 1, "version": 1, "covered": ["1-0"]})
    written = saver.finish_state()
    assert written is not None and written.folder == state.state_dir(Path(out), "run", 1)
    torch.save({"weights": full_weights(policy, saver), "loss": first.loss}, Path(out) / "step1.pt")

    replicas.broadcast(Message("release"))
    resumed = Policy("pop/tiny", cfg, replicas=replicas)  # a new trainer: the base model, then the state
    found = state.latest(Path(out), "run")
    assert found is not None
    saver.restore(resumed, found)
    second = resumed.update([make_group(resumed, rewards, with_logprobs=True) for rewards in REVERSED_REWARDS])
    torch.save({"weights": full_weights(resumed, saver), "loss": second.loss}, Path(out) / "step2.pt")
    replicas.broadcast(Message("stop"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # As dp_worker: leave without the interpreter's teardown, which can abort with gloo's threads alive.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
