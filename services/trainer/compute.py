"""How the policy's forward is computed: precision, gradient checkpointing, the peft adapter.

Mixed precision is ``torch.autocast(bfloat16)`` around the model's forward only: the weights stay
float32 (the optimizer's master copy: at lr ~1e-5 a bf16 weight would round most updates away), the
backward produces float32 gradients, and log-softmax and the losses run outside the autocast region
on logits cast to float32 (a bf16 log-softmax over a 150k vocabulary loses the small differences that
DPO's margins and GRPO's ratios are made of).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

import torch

from shared.config import LoraConfig, TrainerConfig

Precision = Literal["fp32", "bf16"]


def resolve_precision(cfg: TrainerConfig, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA device that supports it; fp32 on CPU, where bf16 measured slower on CPUs
    without bf16 instructions (``python -m benchmarks.update_compute``)."""
    if cfg.precision != "auto":
        return cfg.precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The forward's compute dtype; fp32 is no autocast at all (not an fp32 autocast, which would still
    insert casts)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in the backward instead of storing its activations: transformers' own
    switch, non-reentrant as torch recommends. On a peft model the call reaches the wrapped transformers
    model, which also hooks the input embeddings so that their output requires grad: a LoRA policy needs
    that, since with the base weights frozen a recomputed layer would otherwise see no input that needs a
    gradient (what peft's ``prepare_model_for_gradient_checkpointing`` does)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def adapter_model(base_model: Any, spec: LoraConfig, weights: Path | None) -> Any:
    """A trainable peft LoRA around ``base_model``: resumed from ``weights`` (an adapter folder) or fresh."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    if weights is not None:
        return PeftModel.from_pretrained(base_model, weights, is_trainable=True)
    config = PeftLoraConfig(
        r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
        target_modules=spec.target_modules, task_type="CAUSAL_LM",
    )  # fmt: skip
    return get_peft_model(base_model, config)
