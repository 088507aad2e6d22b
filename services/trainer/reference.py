"""DPO's frozen reference (GRPO's too, when ``kl_beta`` > 0): where it lives, and the seam that builds it.

A full-weight reference beside a float32 policy doubles the weights on the training device (Qwen2.5-7B:
28 GB more, on top of 112 GB of weights, gradients and AdamW moments). The anchors avoid that copy:
TRL precomputes reference log-probs for offline DPO and prepares its reference with ZeRO-3 / FSDP;
OpenRLHF puts the reference on its own GPUs or offloads it (``--ref_reward_offload``); verl runs a
reference worker with FSDP parameter offload; all three switch a PEFT adapter off instead of copying.
Here, by ``trainer.reference``:

- ``device``: a float32 copy on the training device (fast; fine for small models, and on CPU, where
  the "device" is the same memory an offload would use);
- ``offload``: the weights stay in CPU memory, in the checkpoint's stored dtype (bf16 for most), and
  accelerate's ``cpu_offload`` hooks stream each module's weights to the training device for its
  forward and drop them after, so the device holds one module of the reference at a time;
- LoRA never copies (the policy with its adapter off), and the offline pass computes every pair's
  reference log-probs once, before training, and frees the reference (``ReferenceTable``).

``build_reference`` is the one seam; under sharded training (FSDP) it returns the reference in its
stored dtype, sharded over the ranks like the policy (TRL's and verl's choice), so each device holds
1/N of it. The policy only ever calls the module forward, under ``torch.no_grad()``, with a batch on
the training device, and needs ``.logits`` back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from shared.config import DPOConfig, TrainerConfig

Placement = Literal["device", "offload"]
Key = tuple[tuple[int, ...], tuple[int, ...]]


def needs_reference(cfg: TrainerConfig) -> bool:
    """DPO always measures against its reference; GRPO only with a KL penalty."""
    return isinstance(cfg.algorithm, DPOConfig) or cfg.algorithm.kl_beta > 0


def resolve_placement(cfg: TrainerConfig, device: torch.device) -> Placement:
    """``auto``: offload on CUDA (device memory is the scarce one), a plain copy on CPU (no second memory)."""
    if cfg.reference != "auto":
        return cfg.reference
    return "offload" if device.type == "cuda" else "device"


def build_reference(base: str, cfg: TrainerConfig, device: torch.device, sharded: bool = False) -> Any:
    """The frozen starting policy, loaded from ``base`` and placed as ``cfg.reference`` says; ``sharded``
    (FSDP): in its stored dtype, sharded over the ranks like the policy, whatever ``cfg.reference`` says.

    Whatever this returns is called as ``model(input_ids=..., attention_mask=..., position_ids=...,
    logits_to_keep=..., use_cache=False)`` under no_grad on ``device``; nothing else about it is assumed.
    """
    from transformers import AutoModelForCausalLM

    if sharded:
        from services.trainer import sharding

        frozen = AutoModelForCausalLM.from_pretrained(base, dtype="auto").eval().requires_grad_(False)
        return sharding.shard(frozen)
    if resolve_placement(cfg, device) == "device":
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        return model.to(device).eval().requires_grad_(False)
    from accelerate import cpu_offload

    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto").eval().requires_grad_(False)
    return cpu_offload(model, execution_device=device, state_dict=_host_weights(model, device))


def _host_weights(model: torch.nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """The weights the hooks copy from: pinned for a CUDA device (copies run at full bus speed), each
    storage once (tied embeddings share one)."""
    if device.type != "cuda":
        return dict(model.state_dict())
    pinned: dict[int, torch.Tensor] = {}
    out = {}
    for name, tensor in model.state_dict().items():
        ptr = tensor.data_ptr()
        if ptr not in pinned:
            pinned[ptr] = tensor.pin_memory()
        out[name] = pinned[ptr]
    return out


def answer_key(prompt: Sequence[int], completion: Sequence[int]) -> Key:
    """What identifies an answer's reference log-probs: its tokens, whatever batch it is laid out in."""
    return tuple(prompt), tuple(completion)


class ReferenceTable:
    """Reference log-probs computed ahead of training, by answer (prompt and completion token ids):
    TRL's ``precompute_ref_log_probs`` for the offline pass, whose pairs are all known up front."""

    def __init__(self) -> None:
        self._rows: dict[Key, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, keys: Sequence[Key], logps: torch.Tensor) -> None:
        """One batch's reference log-probs, (rows, completion width), stored per answer on the CPU."""
        for key, row in zip(keys, logps.detach().cpu(), strict=True):
            self._rows[key] = row[: len(key[1])].clone()

    def lookup(self, keys: Sequence[Key], device: torch.device) -> torch.Tensor | None:
        """The batch's rows, laid out as ``losses.batch_inputs`` lays out completions; None unless all known."""
        if not self._rows or any(k not in self._rows for k in keys):
            return None
        width = max(len(k[1]) for k in keys)
        out = torch.zeros((len(keys), width), dtype=torch.float32)
        for i, key in enumerate(keys):
            out[i, : len(key[1])] = self._rows[key]
        return out.to(device)
