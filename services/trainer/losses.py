"""Log-probabilities of sampled tokens and the two policy losses.

TRL's DPOTrainer and GRPOTrainer compute these inside their own training loops, which want a
dataset and do their own generation; they have no entry point for ready-scored batches arriving
from a queue. So the per-token log-prob gather is TRL's (``selective_log_softmax``) and the two
objectives are written out here, as TRL defines them (sigmoid DPO; GRPO's clipped ratio).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from trl.trainer.utils import selective_log_softmax


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


def token_logprobs(model: torch.nn.Module, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """log π(token_t | tokens_<t) for every position after the first: shape (batch, width - 1)."""
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1, :].float()
    return selective_log_softmax(logits, ids[:, 1:])


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


def grpo_loss(
    new_logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clipped surrogate, averaged per sequence then over the batch; also the clipped fraction.

    ``old_logps`` are the behaviour policy's (the generator's) per-token log-probs, so the ratio
    corrects for the policy having moved since the answers were sampled.
    """
    ratio = torch.exp(new_logps - old_logps)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_token = -torch.min(unclipped, clipped)
    tokens = mask.sum(dim=1).clamp(min=1.0)
    loss = ((per_token * mask).sum(dim=1) / tokens).mean()
    was_clipped = ((unclipped > clipped).float() * mask).sum() / mask.sum().clamp(min=1.0)
    return loss, was_clipped.detach()
