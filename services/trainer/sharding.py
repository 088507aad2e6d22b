"""Sharded training with torch's FSDP2 (``fully_shard``), for full-weight models too large for one device.

Each decoder layer and then the whole model is sharded over the ranks: a rank holds 1/world of the
weights, gradients and AdamW moments, and gathers one layer's weights at a time for its forward and
backward (reshard after forward, the ZeRO-3 trade). The frozen DPO reference is sharded the same way.

Why torch's API and not accelerate's FSDP plugin: accelerate enables FSDP only for GPU process
groups (its ``DistributedType.FSDP`` is never chosen for ``MULTI_CPU``), so that path could not be
tested on CPU; ``fully_shard`` runs the same on gloo (CPU) and NCCL (GPU), as torchtitan uses it.
accelerate still starts the process group and runs DDP for ``sharding: replicate``.
"""

from __future__ import annotations

from typing import Any

import torch


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The blocks to shard one by one: transformers names them in ``_no_split_modules`` (e.g. Qwen2DecoderLayer)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def shard(model: Any, param_dtype: torch.dtype | None = None) -> Any:
    """Shard ``model`` in place over the default process group; ``param_dtype`` (bf16) makes FSDP gather and
    compute in that dtype while the sharded master weights and the gradient reduction stay fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32) if param_dtype else None
    kwargs: dict[str, Any] = {"mp_policy": policy} if policy is not None else {}
    layers = decoder_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} names no decoder layers (_no_split_modules): cannot shard it")
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0's CPU (other ranks get an empty dict). Collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {name: tensor for name, tensor in weights.items() if isinstance(tensor, torch.Tensor)}


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Clip by the global norm; with sharded (DTensor) gradients the norm is reduced over the ranks."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)
