"""Served versions of the tiny model written straight with transformers (what the trainer's served
checkpoints are: ``save_pretrained`` safetensors), for swap tests that need weights but no training."""

from __future__ import annotations

from pathlib import Path

from shared.modeling import resolve_model


def perturbed_tiny(folder: Path, seed: int, scale: float = 0.05) -> Path:
    """The tiny model with every weight moved by Gaussian noise: same shapes, other answers."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model("pop/tiny"), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def wider_tiny(folder: Path) -> Path:
    """A model of the tiny one's architecture but another width: loadable by vLLM, never in its place."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(resolve_model("pop/tiny"))
    config.hidden_size, config.intermediate_size = 64, 128
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder, safe_serialization=True)
    return folder
