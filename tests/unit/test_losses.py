"""The two losses against values computed by hand."""

import math

import pytest
import torch

from services.trainer.losses import batch_inputs, dpo_loss, grpo_loss


def test_dpo_loss_matches_hand_computation():
    pc, pr, rc, rr = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    loss, margin = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # logits = (-1 + 3) - (-2 + 2) = 2; loss = -log(sigmoid(0.5 * 2)) = log(1 + e^-1)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1.0)))
    assert float(margin) == pytest.approx(1.0)


def test_dpo_loss_at_reference_is_log_two():
    x = torch.tensor([-1.0, -2.0])
    loss, _ = dpo_loss(x, x, x, x, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2.0))


def test_grpo_loss_unclipped_and_clipped():
    mask = torch.tensor([[1.0, 1.0]])
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    # ratio 1: loss = -A averaged over tokens
    loss, frac = grpo_loss(old.clone(), old, torch.tensor([2.0]), mask, clip_eps=0.2)
    assert float(loss) == pytest.approx(-2.0)
    assert float(frac) == 0.0
    # ratio 2 with positive advantage is clipped at 1.2
    new = old + math.log(2.0)
    loss, frac = grpo_loss(new, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    assert float(loss) == pytest.approx(-1.2)
    assert float(frac) == 1.0


def test_grpo_loss_ignores_masked_positions():
    old = torch.zeros((1, 3))
    new = torch.tensor([[0.0, 0.0, 5.0]])
    loss, _ = grpo_loss(new, old, torch.tensor([1.0]), torch.tensor([[1.0, 1.0, 0.0]]), clip_eps=0.2)
    assert float(loss) == pytest.approx(-1.0)


def test_batch_inputs_marks_completion_targets():
    ids, attention, mask = batch_inputs([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 5, 6], [4, 7, 8, 9, 0]]
    assert attention.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # targets are ids[:, 1:]; completion tokens are predicted from the last prompt position on
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]
