"""A checkpoint fits the served model only when its config and every tensor's shape agree: read from
config.json and the safetensors headers of planted folders (sharded or not), never from the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from shared.modeling.signature import (
    ModelSignature,
    SignatureError,
    describe_adapter_mismatch,
    describe_mismatch,
    model_signature,
)

QWEN = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 32,
        "tie_word_embeddings": True, "torch_dtype": "float32"}  # fmt: skip


def tensors(hidden: int = 8, vocab: int = 32, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {
        "model.embed_tokens.weight": torch.zeros(vocab, hidden, dtype=dtype),
        "model.layers.0.self_attn.q_proj.weight": torch.zeros(hidden, hidden, dtype=dtype),
        "model.layers.0.self_attn.v_proj.weight": torch.zeros(hidden // 2, hidden, dtype=dtype),
        "model.layers.0.mlp.up_proj.weight": torch.zeros(16, hidden, dtype=dtype),
        "model.norm.weight": torch.zeros(hidden, dtype=dtype),
    }


def plant(folder: Path, config: dict[str, Any], weights: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    if shards == 1:
        save_file(weights, str(folder / "model.safetensors"))
        return folder
    names, weight_map = sorted(weights), {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: weights[n] for n in names[i::shards]}
        save_file(part, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.fixture
def served(tmp_path: Path) -> ModelSignature:
    return model_signature(plant(tmp_path / "served", QWEN, tensors()))


def test_the_same_model_sharded_and_with_its_tied_head_stored_fits(served: ModelSignature, tmp_path: Path):
    weights = {**tensors(), "lm_head.weight": torch.zeros(32, 8)}
    sharded = model_signature(plant(tmp_path / "ckpt", {**QWEN, "head_dim": 4}, weights, shards=3))
    assert sharded.tensors.keys() == served.tensors.keys() | {"lm_head.weight"}
    assert describe_mismatch(served, sharded) is None
    bf16 = model_signature(plant(tmp_path / "bf16", QWEN, tensors(dtype=torch.bfloat16)))
    assert describe_mismatch(served, bf16) is None  # a served dtype differing is vLLM's to cast


def test_another_width_is_refused_naming_the_config_and_the_tensors(served: ModelSignature, tmp_path: Path):
    wide = model_signature(plant(tmp_path / "wide", {**QWEN, "hidden_size": 16}, tensors(hidden=16)))
    detail = describe_mismatch(served, wide)
    assert detail is not None and detail.startswith("hidden_size: served 8, checkpoint 16")
    assert "tensor model.embed_tokens.weight: shape served [32, 8], checkpoint [32, 16]" in detail


def test_another_architecture_an_untied_head_or_an_integer_tensor_is_refused(served: ModelSignature, tmp_path: Path):
    llama = {**QWEN, "architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    detail = describe_mismatch(served, model_signature(plant(tmp_path / "l", llama, tensors())))
    assert detail is not None and detail.startswith("architectures: served ['Qwen2ForCausalLM']")
    untied = {**tensors(), "lm_head.weight": torch.zeros(32, 8)}
    untied_config = {**QWEN, "tie_word_embeddings": False}
    detail = describe_mismatch(served, model_signature(plant(tmp_path / "u", untied_config, untied)))
    assert detail is not None and "tensor lm_head.weight: only in the checkpoint" in detail
    ints = {**tensors(), "model.norm.weight": torch.zeros(8, dtype=torch.int8)}
    detail = describe_mismatch(served, model_signature(plant(tmp_path / "i", QWEN, ints)))
    assert detail == "tensor model.norm.weight: dtype I8 where the served model has F32"
    fewer = {k: v for k, v in tensors().items() if "up_proj" not in k}
    detail = describe_mismatch(served, model_signature(plant(tmp_path / "f", QWEN, fewer)))
    assert detail == "tensor model.layers.0.mlp.up_proj.weight: only in the served model"


def test_a_folder_without_config_or_weights_has_no_signature(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SignatureError):
        model_signature(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text(json.dumps(QWEN))
    with pytest.raises(SignatureError, match=r"no \*\.safetensors"):
        model_signature(tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(SignatureError, match="header"):
        model_signature(tmp_path / "empty")


def adapter(folder: Path, r: int, targets: list[str] | str, vocab: int = 32) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "target_modules": targets, "peft_type": "LORA"}))
    weights = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(r, 8),
        "base_model.model.model.embed_tokens.lora_embedding_A": torch.zeros(r, vocab),
    }
    save_file(weights, str(folder / "adapter_model.safetensors"))
    return folder


def test_an_adapter_fits_within_the_rank_on_modules_the_base_has(served: ModelSignature, tmp_path: Path):
    assert describe_adapter_mismatch(served, adapter(tmp_path / "ok", 4, ["q_proj", "v_proj"]), 16) is None
    assert describe_adapter_mismatch(served, adapter(tmp_path / "re", 4, r".*\.(q|v)_proj"), 16) is None
    detail = describe_adapter_mismatch(served, adapter(tmp_path / "bad", 32, ["q_proj", "gate_proj"], vocab=64), 16)
    assert detail is not None
    assert "rank r=32" in detail and "['gate_proj']" in detail and "a vocabulary of 64" in detail
