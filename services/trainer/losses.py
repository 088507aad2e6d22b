"""Log-probabilities of sampled tokens and the two policy losses.

TRL's DPOTrainer and GRPOTrainer compute these inside their own training loops, which want a
dataset and do their own generation; they have no entry point for ready-scored batches arriving
from a queue. So the per-token log-prob gather is TRL's (``selective_log_softmax_and_entropy``) and the two
objectives are written out here, as TRL defines them (sigmoid DPO; GRPO's clipped ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from trl.trainer.utils import selective_log_softmax_and_entropy


def batch_inputs(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, and a mask of the completion positions (in target space)."""
    rows = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        completion_mask[i, len(prompt) - 1 : len(row) - 1] = 1.0
    return ids, attention, completion_mask


def token_logprobs(
    model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token_t | tokens_<t) for every position after the first, shape (batch, width - 1), and the
    policy's entropy there (detached: a metric, not a loss term)."""
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1, :].float()
    logps, entropy = selective_log_softmax_and_entropy(logits, ids[:, 1:], entropy_requires_grad=False)
    return logps, entropy


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
