"""One rank of ``test_two_data_parallel_ranks_compute_the_one_process_gradient``: rank 0 drives a
policy as the trainer service does, the other ranks follow it; rank 0 saves the reduced gradients."""

from __future__ import annotations

import os
import sys

import torch

from services.trainer.parallel import Message, follow, start
from services.trainer.policy import Policy
from shared.config import TrainerConfig
from tests.integration.groups import MIXED_REWARDS, make_group


def main(config_json: str, groups: int, out: str) -> None:
    replicas = start()
    assert replicas is not None and replicas.world == 2, "launch with two processes"
    if not replicas.is_main:
        follow(replicas)
        return
    policy = Policy("pop/tiny", TrainerConfig.model_validate_json(config_json), replicas=replicas)
    policy.update([make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS][:groups])
    grads = {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    torch.save(grads, out)
    replicas.broadcast(Message("stop"))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    # Leave without the interpreter's teardown: with the gloo group's threads still alive it can abort
    # the process ("terminate called without an active exception") after the work is done and saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
