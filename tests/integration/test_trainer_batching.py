"""Micro-batching and data parallelism change how an update is computed, never what it is: the
gradients match those of one pass over the whole batch in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cli.stack import free_port
from services.trainer.policy import Policy
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.schemas import EpisodeGroup
from tests.integration.groups import MIXED_REWARDS, make_group

ALGORITHMS = {
    "dpo": DPOConfig(beta=0.1),
    "grpo": GRPOConfig(),
    "dapo": GRPOConfig(loss_type="dapo", kl_beta=0.05),
    "dr_grpo": GRPOConfig(loss_type="dr_grpo", scale_rewards=False),
}


def groups_for(policy: Policy) -> list[EpisodeGroup]:
    return [make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS]


def gradients_after_update(policy: Policy, groups: list[EpisodeGroup]) -> dict[str, torch.Tensor]:
    policy.update(groups)
    return {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.grad is not None}


def assert_same_gradients(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys() and want
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_micro_batches_accumulate_to_the_whole_batch_gradient(name: str):
    whole = Policy("pop/tiny", TrainerConfig(algorithm=ALGORITHMS[name], micro_batch_size=64))
    split = Policy("pop/tiny", TrainerConfig(algorithm=ALGORITHMS[name], micro_batch_size=2))
    want = gradients_after_update(whole, groups_for(whole))
    got = gradients_after_update(split, groups_for(split))
    assert split.update(groups_for(split)).metrics["micro_batches"] > 1
    assert_same_gradients(got, want)


@pytest.mark.parametrize("name, groups", [("grpo", 3), ("dapo", 3), ("dpo", 1)])
def test_two_data_parallel_ranks_compute_the_one_process_gradient(name: str, groups: int, tmp_path: Path):
    """Two CPU processes over gloo, started by torchrun (accelerate's CPU launcher spawns them only through
    MPI); accelerate picks up the process group the same way as under ``accelerate launch`` on GPUs.
    Three groups split 2 + 1, and one group, where rank 1 has no share and must still take part."""
    cfg = TrainerConfig(algorithm=ALGORITHMS[name], micro_batch_size=3)
    out = tmp_path / "grads.pt"
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "tests.integration.dp_worker", cfg.model_dump_json(), str(groups), str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    got = torch.load(out)

    single = Policy("pop/tiny", TrainerConfig.model_validate(json.loads(cfg.model_dump_json())))
    want = gradients_after_update(single, groups_for(single)[:groups])
    assert_same_gradients(got, want)
