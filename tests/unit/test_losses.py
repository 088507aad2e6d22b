"""The two losses against values computed by hand."""

import math

import pytest
import torch

from services.trainer.losses import batch_inputs, dpo_loss, grpo_loss, k3_kl
from services.trainer.metrics import Metrics


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


def test_batch_inputs_align_completions():
    batch = batch_inputs([[1, 2, 3], [4]], [[5, 6], [7, 8, 9]], pad_id=0)
    # prompts left-padded, completions right-padded: every completion starts at column 3
    assert batch.ids.tolist() == [[1, 2, 3, 5, 6, 0], [0, 0, 4, 7, 8, 9]]
    assert batch.attention.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert batch.positions.tolist() == [[0, 1, 2, 3, 4, 4], [0, 0, 0, 1, 2, 3]]
    # one column per completion token: the targets are the last 3 columns of ids
    assert batch.mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_grpo_token_averaging_variants_match_hand_computation():
    # two answers at ratio 1: per-token loss is -A; answer 1 has 1 token (A=3), answer 2 has 3 tokens (A=-1)
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    logps = torch.zeros((2, 3))
    adv = torch.tensor([3.0, -1.0])

    def loss(loss_type: str, norm: int = 1) -> float:
        value, _ = grpo_loss(logps, logps, adv, mask, 0.2, loss_type, norm_tokens=norm)  # type: ignore[arg-type]
        return float(value)

    assert loss("grpo") == pytest.approx(((-3.0) + (1.0)) / 2)  # per-sequence means, then mean: -1.0
    assert loss("dapo") == pytest.approx((-3.0 + 1.0 + 1.0 + 1.0) / 4)  # over all 4 tokens: 0.0
    assert loss("dr_grpo", norm=4) == pytest.approx((-3.0 + 3 * 1.0) / (2 * 4))  # sum / (batch × 4): 0.0
    assert loss("dr_grpo", norm=2) == pytest.approx(0.0)


def test_k3_kl_and_the_kl_penalty():
    new = torch.log(torch.tensor([[0.5, 0.25]]))
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    # k3 = exp(r - n) - (r - n) - 1: token 1: 0.5 - ln(0.5) - 1 = ln 2 - 0.5; token 2: 0
    assert k3_kl(new, ref).tolist()[0] == pytest.approx([math.log(2.0) - 0.5, 0.0])
    assert float(k3_kl(ref, ref).abs().sum()) == 0.0
    mask = torch.ones((1, 2))
    plain, _ = grpo_loss(new, new, torch.tensor([1.0]), mask, 0.2)
    with_kl, _ = grpo_loss(new, new, torch.tensor([1.0]), mask, 0.2, ref_logps=ref, kl_beta=0.1)
    assert float(with_kl) - float(plain) == pytest.approx(0.1 * (math.log(2.0) - 0.5) / 2, rel=1e-5)  # float32


def test_micro_batch_metrics_add_counts_and_weight_means():
    metrics = Metrics()
    metrics.add({"episodes": 8.0, "completion_tokens": 100.0, "entropy": 2.0, "clip_fraction": 0.0}, weight=8.0)
    metrics.add({"episodes": 2.0, "completion_tokens": 30.0, "entropy": 3.0, "clip_fraction": 0.5}, weight=2.0)
    summary = metrics.summary()
    assert summary["episodes"] == 10.0 and summary["completion_tokens"] == 130.0
    assert summary["entropy"] == pytest.approx(2.2) and summary["clip_fraction"] == pytest.approx(0.1)
