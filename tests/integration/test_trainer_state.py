"""What the trainer writes, apart: a served version (weights only, in the served dtype, sharded with an
index once large) and the resumable state (fp32 weights, optimizer, RNG), from which a new trainer
continues exactly as the old one would have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from services.trainer import state
from services.trainer.checkpoint import read_manifest, save_checkpoint, served_dtype
from services.trainer.policy import Policy
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.files import sha256_file
from shared.modeling import resolve_model
from tests.integration.groups import MIXED_REWARDS, REVERSED_REWARDS, make_group


def weights(policy: Policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def test_a_served_version_is_weights_only_in_the_served_dtype_sharded_with_an_index(tmp_path: Path):
    policy = Policy("pop/tiny", TrainerConfig(algorithm=GRPOConfig(), learning_rate=1e-3))
    policy.update([make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS])
    assert served_dtype("auto", resolve_model("pop/tiny")) == torch.float32  # the tiny model is stored in fp32
    path, manifest = save_checkpoint(
        policy.model, policy.tokenizer, tmp_path, "r", 1, 1, "pop/tiny",
        dtype=torch.bfloat16, shard_size="200KB", consumed=["1-0", "2-0"], dropped={"3-0": "stale"},
    )  # fmt: skip
    shards = sorted(path.glob("model-*.safetensors"))
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(shards) > 2 and set(index["weight_map"].values()) == {s.name for s in shards}
    assert manifest.dtype == "bfloat16" and json.loads((path / "config.json").read_text())["dtype"] == "bfloat16"
    assert (
        manifest == read_manifest(path) and manifest.consumed == ["1-0", "2-0"] and manifest.dropped == {"3-0": "stale"}
    )
    assert set(manifest.files) == {p.name for p in path.iterdir()} - {"manifest.json"}
    assert all(sha256_file(path / name) == digest for name, digest in manifest.files.items())
    # what transformers (and vLLM) load is the trained model, rounded to bf16
    loaded = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
    assert loaded.dtype == torch.bfloat16
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, policy.model.state_dict()[name].to(torch.bfloat16)), name


@pytest.mark.parametrize(
    "cfg",
    [
        TrainerConfig(algorithm=DPOConfig(beta=0.1), learning_rate=1e-3),
        TrainerConfig(algorithm=GRPOConfig(kl_beta=0.05), learning_rate=1e-2, weight_mode="lora", lora={"r": 4}),
    ],
    ids=["full-dpo", "lora-grpo"],
)
def test_a_resumed_policy_continues_exactly_as_the_one_that_wrote_the_state(cfg: TrainerConfig, tmp_path: Path):
    policy = Policy("pop/tiny", cfg)
    groups = [make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS]
    policy.update(groups)
    partial, final = state.begin(tmp_path, "r", 1)
    pending = state.PendingState(
        state.save_async(policy.model, policy.optimizer, partial), partial, final, {"step": 1, **state.rng_state()}
    )
    later = [make_group(policy, rewards, with_logprobs=True) for rewards in REVERSED_REWARDS]  # another gradient
    policy.update(later)  # training goes on while the state is written: the state is the step-1 one
    written = pending.finish()
    assert written.folder == final and not partial.exists() and state.latest(tmp_path, "r") is not None
    if cfg.weight_mode == "lora":  # the frozen base (2.6 MB in fp32) comes back from the base model, not the state
        assert sum(p.stat().st_size for p in final.iterdir()) < 600_000

    resumed = Policy("pop/tiny", cfg)
    found = state.latest(tmp_path, "r")
    assert found is not None and found.meta["step"] == 1
    state.load(resumed.model, resumed.optimizer, found.folder)
    state.set_rng_state(found.meta)
    resumed.update(later)  # step 2 again, from the state: the same weights as the original's step 2
    for name, tensor in weights(policy).items():
        torch.testing.assert_close(
            weights(resumed)[name], tensor, rtol=1e-5, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}"
        )

    # A newer state replaces the older one: only the newest is ever resumed from.
    partial2, final2 = state.begin(tmp_path, "r", 2)
    state.PendingState(state.save_async(resumed.model, resumed.optimizer, partial2), partial2, final2, {}).finish()
    assert sorted(p.name for p in (tmp_path / "r" / "state").iterdir()) == ["s000002"]
