"""Sharded training (FSDP2 over two gloo ranks) makes the updates one process makes, writes the served
version gathered on rank 0 (sharded safetensors with an index), and resumes from its sharded state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli.stack import free_port
from services.trainer.checkpoint import read_manifest
from services.trainer.policy import Policy
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.files import sha256_file
from tests.integration.groups import MIXED_REWARDS, REVERSED_REWARDS, make_group

ALGORITHMS = {"dpo": DPOConfig(beta=0.1), "grpo-kl": GRPOConfig(loss_type="dapo", kl_beta=0.05)}


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Within 2% of the learning rate (1e-3), the size of one Adam step: the reduce-scatter sums in another
    order than one process, and Adam's first steps (≈ lr·sign(g)) amplify that rounding where g ≈ 0."""
    assert got.keys() == want.keys() and want
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


def served_weights(folder: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    return weights


@pytest.mark.parametrize("name", ALGORITHMS)
def test_fsdp_on_two_ranks_updates_as_one_process_and_resumes_from_its_sharded_state(name: str, tmp_path: Path):
    cfg = TrainerConfig(algorithm=ALGORITHMS[name], learning_rate=1e-3, micro_batch_size=3)
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "tests.integration.fsdp_worker", cfg.model_dump_json(), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(
        argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # One thread, as each rank: the tiny model's gradients are ~1e-8, where Adam's first steps (≈ lr·sign(g))
    # would turn another summation order's rounding into lr-sized differences.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = Policy("pop/tiny", cfg)
        groups = [make_group(single, rewards, with_logprobs=True) for rewards in MIXED_REWARDS]
        first = single.update(groups)
        after_one = {k: v.detach().clone() for k, v in single.model.state_dict().items()}
        # Other scores, so another gradient: the moments carried over from step 1 shape this step, and a
        # resume that lost them would differ.
        second = single.update([make_group(single, rewards, with_logprobs=True) for rewards in REVERSED_REWARDS])
    finally:
        torch.set_num_threads(threads)

    step1, step2 = torch.load(tmp_path / "step1.pt"), torch.load(tmp_path / "step2.pt")
    assert step1["loss"] == pytest.approx(first.loss, rel=1e-4)
    assert step2["loss"] == pytest.approx(second.loss, rel=1e-4)
    assert_close(step1["weights"], after_one)
    assert_close(step2["weights"], dict(single.model.state_dict()))

    # The served version: gathered on rank 0, sharded (1 MB shards) with an index, every file checksummed.
    version = tmp_path / "run" / "v000001"
    manifest = read_manifest(version)
    shards = sorted(p.name for p in version.glob("model-*.safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in manifest.files
    assert all(manifest.files[f.name] == sha256_file(f) for f in version.iterdir() if f.name != "manifest.json")
    assert manifest.consumed == ["1-0"] and manifest.dtype == "float32"
    served = served_weights(version)
    assert_close(served, {k: v for k, v in after_one.items() if k in served})
    assert not list(version.glob("*.pt")) and not list(version.glob("*optim*"))  # weights only
    # The resumable state: one DCP file per rank (the shards as they lie), and the meta.
    assert sorted(p.name for p in (tmp_path / "run" / "state" / "s000001").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
