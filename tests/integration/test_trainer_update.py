"""Real updates of a real model (the tiny Qwen2): DPO and GRPO change the weights, checkpoints are
complete and load back, and what the trainer saves is what it trained.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from uuid import uuid4

import pytest
import torch
from redis.asyncio import Redis
from safetensors.torch import load_file

from cli.__main__ import export_episodes
from services.trainer.checkpoint import save_checkpoint
from services.trainer.offline import train_offline
from services.trainer.policy import Policy
from shared.config import DPOConfig, GRPOConfig, RunConfig, TrainerConfig
from shared.files import sha256_file
from shared.schemas import Completion
from shared.streams import EpisodeStream
from tests.integration.groups import make_group


def snapshot(policy: Policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


@pytest.mark.parametrize(
    "algorithm",
    [DPOConfig(beta=0.1), GRPOConfig(clip_eps=0.2), GRPOConfig(loss_type="dapo", kl_beta=0.05)],
    ids=["dpo", "grpo", "grpo-dapo-kl"],
)
def test_update_changes_weights_and_checkpoint_round_trips(algorithm, tmp_path: Path):
    policy = Policy("pop/tiny", TrainerConfig(algorithm=algorithm, learning_rate=1e-3))
    groups = [make_group(policy, [2.0, 0.0, 1.0, 0.5], with_logprobs=True) for _ in range(2)]
    assert all(policy.usable(g) for g in groups)
    assert not policy.usable(make_group(policy, [1.0, 1.0, 1.0, 1.0], with_logprobs=True))

    before = snapshot(policy)
    result = policy.update(groups)
    assert torch.isfinite(torch.tensor(result.loss))
    metrics = result.metrics
    assert metrics["entropy"] > 0 and metrics["tokens_per_second"] > 0 and metrics["completion_tokens"] > 0
    has_reference = isinstance(algorithm, DPOConfig) or algorithm.kl_beta > 0
    assert ("kl_reference" in metrics) == has_reference and metrics.get("kl_reference", 0.0) >= 0.0
    if isinstance(algorithm, GRPOConfig) and algorithm.kl_beta:
        assert result.metrics["kl_reference"] == pytest.approx(0.0, abs=1e-6)  # first step: still the reference
    changed = [k for k, v in policy.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, changed

    path, manifest = save_checkpoint(policy.model, policy.tokenizer, tmp_path, "r", 1, 1, "pop/tiny")
    assert path.name == "v000001" and not list(tmp_path.glob("r/.*partial"))
    on_disk = json.loads((path / "manifest.json").read_text())
    assert (
        on_disk["files"]["model.safetensors"]
        == sha256_file(path / "model.safetensors")
        == manifest.files["model.safetensors"]
    )
    saved = load_file(str(path / "model.safetensors"))
    for name, tensor in saved.items():
        assert torch.equal(tensor, policy.model.state_dict()[name].cpu())


def test_grpo_without_behaviour_logprobs_is_on_policy(tmp_path: Path):
    policy = Policy("pop/tiny", TrainerConfig(algorithm=GRPOConfig(), learning_rate=1e-3))
    result = policy.update([make_group(policy, [2.0, 0.0, 1.0, 0.5], with_logprobs=False)])
    assert result.metrics["clip_fraction"] == 0.0 and torch.isfinite(torch.tensor(result.loss))


def test_a_teachers_text_only_answers_are_tokenized_as_the_policy_would(tmp_path: Path):
    """A teacher solver returns text, not our token ids: the trainer tokenizes prompt and answer itself."""
    policy = Policy("pop/tiny", TrainerConfig(algorithm=DPOConfig(beta=0.1), learning_rate=1e-3))
    on_policy = make_group(policy, [2.0, 0.0, 1.0, 0.5], with_logprobs=True)
    teacher = on_policy.model_copy(deep=True)
    for e in teacher.episodes:
        e.prompt_token_ids = []
        e.completion = Completion(text=e.completion.text, finish_reason="length")
    for ours, theirs in zip(on_policy.episodes, teacher.episodes, strict=True):
        assert policy.token_ids(theirs) == (ours.prompt_token_ids, ours.completion.token_ids)
    stopped = teacher.episodes[0].model_copy(update={"completion": Completion(text="The heart.", finish_reason="stop")})
    assert policy.token_ids(stopped)[1][-1] == policy.tokenizer.eos_token_id

    before = snapshot(policy)
    result = policy.update([teacher])
    assert torch.isfinite(torch.tensor(result.loss)) and result.metrics["pairs"] == 1.0
    assert any(not torch.equal(v, before[k]) for k, v in policy.model.state_dict().items())


async def test_the_papers_offline_dpo_pass_over_an_exported_episode_set(tmp_path: Path, redis: Redis, redis_url: str):
    """Groups exported from a run's stream train one offline DPO epoch, as the paper's released code does."""
    run_id = f"offline-{uuid4().hex}"
    probe = Policy("pop/tiny", TrainerConfig())
    stream = EpisodeStream(redis, run_id)
    flat = make_group(probe, [1.0, 1.0, 1.0, 1.0], with_logprobs=True)  # no signal: skipped
    for group in [make_group(probe, [2.0, 0.0, 1.0, 0.5], with_logprobs=True) for _ in range(5)] + [flat]:
        await stream.append(group)
    episodes = tmp_path / "groups.jsonl"
    assert await export_episodes(redis_url, run_id, episodes) == 6  # what `pop episodes RUN_ID` writes

    config = RunConfig.model_validate(
        {"model": "pop/tiny", "trainer": {"algorithm": {"name": "dpo", "beta": 0.1}, "learning_rate": 1e-3,
                                         "groups_per_step": 2}}
    )  # fmt: skip
    before = snapshot(probe)
    path, manifest, history = await asyncio.to_thread(train_offline, config, episodes, tmp_path / "out")
    assert [h["step"] for h in history] == [1, 2, 3]  # 5 usable groups in batches of 2
    assert sum(h["pairs"] for h in history) == 5
    trained = load_file(str(path / "model.safetensors"))
    assert any(not torch.equal(trained[k], before[k]) for k in trained)
    assert manifest.step == 3 and (path.parent / "metrics.jsonl").read_text().count("\n") == 3
    with pytest.raises(ValueError, match="paper's DPO recipe"):
        train_offline(RunConfig.model_validate({"trainer": {"algorithm": {"name": "grpo"}}}), episodes, tmp_path)
    await redis.delete(stream.key)


@pytest.mark.parametrize("algorithm", [DPOConfig(beta=0.1), GRPOConfig(kl_beta=0.05)], ids=["dpo", "grpo-kl"])
def test_lora_mode_trains_only_the_adapter_and_saves_it_alone(algorithm, tmp_path: Path):
    cfg = TrainerConfig(algorithm=algorithm, learning_rate=1e-2, weight_mode="lora", lora={"r": 4, "alpha": 8})
    policy = Policy("pop/tiny", cfg)
    assert policy.reference is None  # the reference is the same model with its adapter switched off
    before = snapshot(policy)
    groups = [make_group(policy, [2.0, 0.0, 1.0, 0.5], with_logprobs=True) for _ in range(2)]
    for _ in range(2):  # LoRA's B starts at 0: the first step moves B, the second also A
        result = policy.update(groups)
    assert result.metrics["kl_reference"] > 0.0  # the adapter moved the policy away from its reference
    changed = {k for k, v in policy.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)

    path, manifest = save_checkpoint(policy.model, policy.tokenizer, tmp_path, "r", 1, 1, "pop/tiny", cfg.weight_mode)
    assert manifest.mode == "lora" and "adapter_model.safetensors" in manifest.files
    assert not (path / "model.safetensors").exists()
    assert (path / "adapter_model.safetensors").stat().st_size < 1_000_000
    resumed = Policy("pop/tiny", cfg, weights=path)
    for name, tensor in policy.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
