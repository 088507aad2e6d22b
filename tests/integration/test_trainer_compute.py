"""How an update is computed (completion-only logits, bf16 autocast, gradient checkpointing, where the
reference lives) never changes what it computes: each is checked against the plain computation, one
unpadded sequence at a time with logits everywhere, on real models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from services.trainer import losses
from services.trainer.policy import Policy
from services.trainer.reference import build_reference
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.modeling import resolve_model
from shared.schemas import Episode, EpisodeGroup
from tests.integration.groups import MIXED_REWARDS, make_group

DPO, GRPO, GRPO_KL = DPOConfig(beta=0.1), GRPOConfig(), GRPOConfig(loss_type="dapo", kl_beta=0.05)


def uneven_groups(policy: Policy) -> list[EpisodeGroup]:
    """The mixed groups, each with a prompt of its own length (answers differ in length already)."""
    groups = [make_group(policy, rewards, with_logprobs=True) for rewards in MIXED_REWARDS]
    for extra, group in enumerate(groups):
        for e in group.episodes:
            e.prompt_token_ids = [7 + i for i in range(5 * extra)] + e.prompt_token_ids
    return groups


def row_logps(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> torch.Tensor:
    """One sequence, no padding, logits at every position: the computation everything is checked against."""
    device = next(model.parameters()).device
    ids = torch.tensor([prompt + completion], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, ids[0, len(prompt) :, None]).squeeze(-1)


def padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    values = torch.zeros((len(rows), width), device=rows[0].device)
    mask = torch.zeros_like(values)
    for i, r in enumerate(rows):
        values[i, : len(r)], mask[i, : len(r)] = r, 1.0
    return values, mask


def plain_loss(policy: Policy, reference: torch.nn.Module | None, groups: list[EpisodeGroup]) -> torch.Tensor:
    """The batch's loss from two models (the policy and a separate float32 reference), row by row."""
    items = policy._items(groups)
    algo = policy.cfg.algorithm

    def logps(model: torch.nn.Module, episodes: list[Episode]) -> torch.Tensor:
        return padded([row_logps(model, *policy.token_ids(e)) for e in episodes])[0]

    if isinstance(algo, DPOConfig):
        episodes = [p.chosen for p in items] + [p.rejected for p in items]
        assert reference is not None
        seq, ref = logps(policy.model, episodes).sum(1), logps(reference, episodes).detach().sum(1)
        n = len(items)
        return losses.dpo_loss(seq[:n], seq[n:], ref[:n], ref[n:], algo.beta)[0]
    new, mask = padded([row_logps(policy.model, *policy.token_ids(e)) for e in items])
    old = padded([torch.tensor(e.completion.logprobs, device=policy.device) for e in items])[0]
    ref = logps(reference, items).detach() if reference is not None else None
    advantages = torch.tensor([e.advantage or 0.0 for e in items], device=policy.device)
    return losses.grpo_loss(
        new, old, advantages, mask, algo.clip_eps, algo.loss_type, ref, algo.kl_beta, policy.answer_tokens
    )[0]


def fp32_reference(device: torch.device) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(resolve_model("pop/tiny"), dtype=torch.float32).to(device).eval()


def plain_gradients(policy: Policy, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """``loss``'s gradients, clipped as the update clips them."""
    policy.model.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(
        [p for p in policy.model.parameters() if p.grad is not None], policy.cfg.max_grad_norm
    )
    return gradients(policy)


def gradients(policy: Policy) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in policy.model.named_parameters() if p.grad is not None}


def assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], rtol: float = 1e-4) -> None:
    assert got.keys() == want.keys() and want
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=rtol, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("algorithm", [DPO, GRPO, GRPO_KL], ids=["dpo", "grpo", "grpo-dapo-kl"])
def test_completion_only_logits_give_the_plain_log_probs_loss_and_gradients(algorithm):
    """Prompts left-padded, completions right-padded, logits only at the completion columns
    (``logits_to_keep``), in micro-batches: the same per-token log-probs, loss and gradients as each
    sequence alone with logits everywhere."""
    policy = Policy("pop/tiny", TrainerConfig(algorithm=algorithm, micro_batch_size=4, precision="fp32"))
    groups = uneven_groups(policy)
    episodes = [e for g in groups for e in g.episodes]
    logps, mask = policy._logps(policy.model, episodes)
    want, want_mask = padded([row_logps(policy.model, *policy.token_ids(e)) for e in episodes])
    assert torch.equal(mask, want_mask) and logps.shape[1] < max(len(p + c) for p, c in map(policy.token_ids, episodes))
    torch.testing.assert_close(logps * mask, want, rtol=1e-5, atol=1e-5)
    policy.full_logits = True
    torch.testing.assert_close(policy._logps(policy.model, episodes)[0], logps, rtol=1e-5, atol=1e-5)
    policy.full_logits = False

    reference = fp32_reference(policy.device) if algorithm is not GRPO else None
    want_loss = plain_loss(policy, reference, groups)
    want_grads = plain_gradients(policy, want_loss)
    result = policy.update(groups)  # starts with zero_grad; steps after the gradients are read below
    assert result.metrics["micro_batches"] > 1
    assert result.loss == pytest.approx(want_loss.item(), rel=1e-5, abs=1e-6)
    assert_close(gradients(policy), want_grads)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("algorithm", [DPO, GRPO], ids=["dpo", "grpo"])
def test_an_update_lowers_the_loss_of_its_batch_in_either_precision(algorithm, precision: str):
    policy = Policy("pop/tiny", TrainerConfig(algorithm=algorithm, learning_rate=1e-3, precision=precision))
    assert policy.precision == precision
    groups = uneven_groups(policy)

    def loss() -> float:
        with torch.no_grad():
            return float(policy._loss(policy._items(groups))[0])

    before = loss()
    for _ in range(3):
        policy.update(groups)
    assert loss() < before - 1e-3
    # Mixed precision keeps float32 master weights and gradients; the forward really ran in bf16.
    assert all(p.dtype == torch.float32 and p.grad is not None for p in policy.model.parameters())
    episodes = [e for g in groups for e in g.episodes]
    fp32 = policy._logps(policy.model, episodes)[0]
    policy.precision = "fp32"
    assert torch.equal(policy._logps(policy.model, episodes)[0], fp32) == (precision == "fp32")


def test_auto_precision_and_reference_follow_the_device():
    """CPU: float32 compute and a plain copy (what measured fastest here); CUDA: bf16 and an offloaded copy."""
    policy = Policy("pop/tiny", TrainerConfig(algorithm=DPO))
    on_cuda = policy.device.type == "cuda"
    assert policy.precision == ("bf16" if on_cuda else "fp32")
    assert policy.reference is not policy.model and hasattr(policy.reference, "_hf_hook") == on_cuda


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("algorithm", [DPO, GRPO_KL], ids=["dpo", "grpo-dapo-kl"])
def test_gradient_checkpointing_gives_the_same_gradients(algorithm, mode: str):
    def cfg(checkpointing: bool) -> TrainerConfig:
        return TrainerConfig(
            algorithm=algorithm, weight_mode=mode, lora={"r": 4, "alpha": 8}, precision="fp32",
            gradient_checkpointing=checkpointing,
        )  # fmt: skip

    torch.manual_seed(0)  # the same fresh adapter for both
    plain = Policy("pop/tiny", cfg(False))
    torch.manual_seed(0)
    checkpointed = Policy("pop/tiny", cfg(True))
    assert checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    if mode == "lora":  # B starts at zero: one step makes every adapter weight's gradient non-zero
        for policy in (plain, checkpointed):
            policy.update(uneven_groups(policy))
    plain.update(uneven_groups(plain))
    checkpointed.update(uneven_groups(checkpointed))
    want, got = gradients(plain), gradients(checkpointed)
    assert_close(got, want)
    assert all(float(g.abs().sum()) > 0 for g in got.values())


@pytest.mark.parametrize("algorithm", [DPO, GRPO_KL], ids=["dpo", "grpo-dapo-kl"])
@pytest.mark.parametrize("strategy", ["device", "offload", "precomputed", "lora"])
def test_each_reference_strategy_equals_a_separate_float32_reference(algorithm, strategy: str):
    """Once the policy has moved (one update), the next update's loss and gradients equal the two-model
    computation. ``offload`` keeps the weights off the module (accelerate's hooks bring them for each
    forward); ``precomputed`` (the offline pass) frees the reference; LoRA switches its adapter off."""
    cfg = TrainerConfig(
        algorithm=algorithm, precision="fp32", learning_rate=1e-3, lora={"r": 4, "alpha": 8},
        reference="offload" if strategy == "offload" else "device",
        weight_mode="lora" if strategy == "lora" else "full",
    )  # fmt: skip
    policy = Policy("pop/tiny", cfg)
    groups = uneven_groups(policy)
    if strategy == "offload":
        assert {p.device.type for p in policy.reference.parameters()} == {"meta"}
    if strategy == "precomputed":
        assert policy.precompute_reference(groups) == (6 if algorithm is DPO else 11)  # pairs; distinct answers
        assert policy.reference is None
    assert (policy.reference is None) == (strategy in ("precomputed", "lora"))
    policy.update(groups)
    want_loss = plain_loss(policy, fp32_reference(policy.device), groups)
    want = plain_gradients(policy, want_loss)
    result = policy.update(groups)
    assert result.loss == pytest.approx(want_loss.item(), rel=1e-5, abs=1e-6)
    assert result.metrics["kl_reference"] > 1e-6  # the reference stayed where the policy started
    assert_close(gradients(policy), want)


def test_an_offloaded_reference_keeps_the_stored_bf16_weights(tmp_path: Path):
    """A checkpoint stored in bf16 (as most are) stays bf16 in CPU memory; its log-probs are the float32
    policy's to bf16 accuracy (log-probs near -7.6 here; bf16's step there is 0.03)."""
    cfg = TrainerConfig(algorithm=DPO, reference="offload", precision="fp32")
    policy = Policy("pop/tiny", cfg)
    fp32_reference(policy.device).to(torch.bfloat16).save_pretrained(tmp_path)
    policy.reference = build_reference(str(tmp_path), cfg, policy.device)
    stored = policy.reference.model.embed_tokens._hf_hook.weights_map.dataset  # what the hooks copy from
    assert {t.dtype for t in stored.values()} == {torch.bfloat16}
    episodes = [e for g in uneven_groups(policy) for e in g.episodes]
    with torch.no_grad():
        want, mask = policy._logps(policy.model, episodes)
    got = policy.reference_logps(episodes)
    assert float(((got - want) * mask).abs().max()) < 0.03  # measured: 0.003
    assert float(want.abs().max()) > 1.0
