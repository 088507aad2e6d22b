"""Log-probabilities of sampled tokens and the two policy losses.

Batches are laid out as TRL lays them out (prompts left-padded, completions right-padded) so that
logits are computed at the completion positions only (``logits_to_keep``).

TRL's DPOTrainer and GRPOTrainer compute these inside their own training loops, which want a
dataset and do their own generation; they have no entry point for ready-scored batches arriving
from a queue. So the per-token log-prob gather is TRL's (``selective_log_softmax_and_entropy``) and the two
objectives are written out here, as TRL defines them (sigmoid DPO; GRPO's clipped ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from trl.trainer.utils import selective_log_softmax_and_entropy

from services.trainer.compute import Precision, autocast
from shared.schemas import Episode


@dataclass(frozen=True)
class Batch:
    """Rows laid out as TRL lays them out: prompts left-padded, completions right-padded, so every row's
    completion starts at the same column and only the last ``mask.shape[1] + 1`` columns need logits."""

    ids: torch.Tensor
    """(rows, prompt width + completion width) token ids."""
    attention: torch.Tensor
    """1 on real tokens, 0 on padding."""
    positions: torch.Tensor
    """Each row's own positions, 0 at its first real token (as the generator saw it; left padding would
    otherwise shift them, which matters to models with absolute position embeddings)."""
    mask: torch.Tensor
    """(rows, completion width): 1 where the target is a completion token. Column j is the row's j-th
    completion token, so per-token arrays of an answer (e.g. the generator's log-probs) align with it."""

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.ids, self.attention, self.positions, self.mask)))


def episode_token_ids(tokenizer: Any, e: Episode) -> tuple[list[int], list[int]]:
    """Prompt and completion ids: the generator's own; a teacher's answer (text only) is tokenized as the
    policy would, with the EOS it would have emitted when the answer stopped by itself."""
    prompt = list(e.prompt_token_ids)
    if not prompt:
        messages = [m.model_dump() for m in e.prompt_messages]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    completion = list(e.completion.token_ids)
    if not completion:
        completion = list(tokenizer(e.completion.text, add_special_tokens=False)["input_ids"])
        if e.completion.finish_reason == "stop" and tokenizer.eos_token_id is not None:
            completion.append(int(tokenizer.eos_token_id))
    return prompt, completion


def batch_inputs(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int) -> Batch:
    """The rows of one forward pass, prompts left-padded and completions right-padded."""
    prompt_width = max(len(p) for p in prompts)
    width = max(len(c) for c in completions)
    ids = torch.full((len(prompts), prompt_width + width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    mask = torch.zeros((len(prompts), width), dtype=torch.float32)
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        row = torch.tensor(list(prompt) + list(completion), dtype=torch.long)
        start = prompt_width - len(prompt)
        ids[i, start : start + len(row)] = row
        attention[i, start : start + len(row)] = 1
        mask[i, : len(completion)] = 1.0
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return Batch(ids, attention, positions, mask)


def token_logprobs(
    model: torch.nn.Module, batch: Batch, precision: Precision = "fp32", full_logits: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token | earlier tokens) at each completion column, shape ``batch.mask.shape``, and the
    policy's entropy there (detached: a metric, not a loss term).

    The model computes logits only for the last completion-width + 1 positions (transformers'
    ``logits_to_keep``, as TRL does): the (rows × width × vocabulary) logits are a training step's
    largest activation, and prompt positions need none. ``full_logits`` computes them everywhere and
    slices the same columns (tests compare the two). The forward runs in ``precision``; the
    log-softmax and entropy always in float32, outside the autocast region.
    """
    width = batch.mask.shape[1]
    keep = 0 if full_logits else width + 1
    with autocast(precision, batch.ids.device):
        output = model(
            input_ids=batch.ids, attention_mask=batch.attention, position_ids=batch.positions,
            logits_to_keep=keep, use_cache=False,
        )  # fmt: skip
    logits = output.logits[:, -(width + 1) : -1, :].float()
    targets = batch.ids[:, batch.ids.shape[1] - width :]
    return selective_log_softmax_and_entropy(logits, targets, entropy_requires_grad=False)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid DPO on sequence log-probs: -log σ(β[(πc - πr) - (refc - refr)]); also the rewards margin."""
    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    loss = -F.logsigmoid(beta * logits).mean()
    margin = beta * logits.detach().mean()
    return loss, margin


GRPOLossType = Literal["grpo", "dapo", "dr_grpo"]


def reduce_tokens(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: GRPOLossType, norm_tokens: int
) -> torch.Tensor:
    """How per-token losses become one number, as TRL's ``loss_type`` defines it.

    ``grpo``: mean over each sequence's tokens, then over sequences (short answers weigh more per token).
    ``dapo``: mean over every token of the batch (token-level; DAPO).
    ``dr_grpo``: sum over tokens divided by batch size × a constant length (Dr. GRPO; no length bias).
    """
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()
    if loss_type == "dapo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    return masked.sum() / (per_token.shape[0] * max(norm_tokens, 1))


def k3_kl(new_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate exp(r - n) - (r - n) - 1 (Schulman's k3, as TRL uses): ≥ 0, unbiased."""
    delta = ref_logps - new_logps
    return torch.exp(delta) - delta - 1


def grpo_loss(
    new_logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    loss_type: GRPOLossType = "grpo",
    ref_logps: torch.Tensor | None = None,
    kl_beta: float = 0.0,
    norm_tokens: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clipped surrogate (plus β·KL to the reference when given), reduced per ``loss_type``;
    also the clipped fraction.

    ``old_logps`` are the behaviour policy's (the generator's) per-token log-probs, so the ratio
    corrects for the policy having moved since the answers were sampled.
    """
    ratio = torch.exp(new_logps - old_logps)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.min(unclipped, clipped)
    if ref_logps is not None and kl_beta > 0:
        per_token = per_token + kl_beta * k3_kl(new_logps, ref_logps)
    loss = reduce_tokens(per_token, mask, loss_type, norm_tokens)
    was_clipped = ((unclipped > clipped).float() * mask).sum() / mask.sum().clamp(min=1.0)
    return loss, was_clipped.detach()
