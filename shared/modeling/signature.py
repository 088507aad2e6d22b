"""What a model folder *is*, read from its config.json and its safetensors headers only: enough to tell,
before anything is loaded, whether a checkpoint can replace the served weights in place.

An in-place reload of weights of another shape dies inside vLLM's worker and takes the engine with it
(issue 19: a fuzzing pass swapped SmolLM2 weights onto the tiny model and the generator was gone). The
generator compares before it pauses; the gateway compares a run's model with the fleet's at creation.
Only headers are read (8 bytes of length, then JSON), so a 100 GB checkpoint costs milliseconds.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

CONFIG_FIELDS = (
    "architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "vocab_size", "tie_word_embeddings", "head_dim",
)  # fmt: skip
FLOATING = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4"})
INDEX = "model.safetensors.index.json"
TIED_HEAD = "lm_head.weight"
MAX_HEADER_BYTES = 100 << 20
IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")
"""Buffers older checkpoints store and vLLM skips on load: never a reason to refuse."""
SHOWN = 5


class SignatureError(ValueError):
    """The folder is not a model vLLM could load: no config, no readable safetensors."""


class TensorSpec(BaseModel):
    dtype: str = Field(description="safetensors dtype code: F32, BF16, F16, I8 ...")
    shape: list[int]


class ModelSignature(BaseModel):
    """The shape of a model: the config fields an in-place reload depends on, and every stored tensor."""

    config: dict[str, Any] = Field(description=f"The fields of config.json among {', '.join(CONFIG_FIELDS)}.")
    tensors: dict[str, TensorSpec] = Field(description="Every tensor in the safetensors files, by name.")

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def modules(self) -> set[str]:
        """Module paths that hold parameters (``model.layers.0.self_attn.q_proj``), from the tensor names."""
        return {name.rsplit(".", 1)[0] for name in self.tensors if "." in name}

    def vocab_rows(self) -> int | None:
        for name, spec in self.tensors.items():
            if name.endswith("embed_tokens.weight") and spec.shape:
                return spec.shape[0]
        vocab = self.config.get("vocab_size")
        return vocab if isinstance(vocab, int) else None


class ServedModel(BaseModel):
    """``GET /v1/policy/model`` on a generator's admin port: the base it serves and its signature."""

    served_name: str = Field(description="The model name its OpenAI routes answer to.")
    path: str = Field(description="The base model's local folder (version 0).")
    signature: ModelSignature


def read_header(path: Path) -> dict[str, TensorSpec]:
    """The tensors one safetensors file declares, without reading their data."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > MAX_HEADER_BYTES:
                raise SignatureError(f"{path.name}: a {length}-byte header is not a safetensors header")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError) as exc:
        raise SignatureError(f"{path.name}: unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise SignatureError(f"{path.name}: the safetensors header is not a JSON object")
    try:
        return {
            name: TensorSpec(dtype=entry["dtype"], shape=entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureError(f"{path.name}: malformed safetensors header entry: {exc!r}") from exc


def weight_files(folder: Path) -> list[Path]:
    """The shards the index names, or every ``*.safetensors`` file when there is no index."""
    index = folder / INDEX
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SignatureError(f"{index.name} is not a safetensors index: {exc!r}") from exc
        return [folder / name for name in names]
    return sorted(folder.glob("*.safetensors"))


def _config(folder: Path, name: str = "config.json") -> dict[str, Any]:
    try:
        data = json.loads((folder / name).read_text())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"{folder / name}: {exc}") from exc
    if not isinstance(data, dict):
        raise SignatureError(f"{folder / name} is not a JSON object")
    return data


def model_signature(folder: Path) -> ModelSignature:
    """The signature of a Hugging Face model folder (a multimodal config's ``text_config`` fills gaps)."""
    raw = _config(folder)
    nested = raw.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    config = {k: raw[k] if k in raw else text[k] for k in CONFIG_FIELDS if k in raw or k in text}
    files = weight_files(folder)
    if not files:
        raise SignatureError(f"{folder} holds no *.safetensors file")
    tensors: dict[str, TensorSpec] = {}
    for path in files:
        tensors.update({k: v for k, v in read_header(path).items() if not IGNORED.search(k)})
    return ModelSignature(config=config, tensors=tensors)


def describe_mismatch(served: ModelSignature, candidate: ModelSignature) -> str | None:
    """None when ``candidate``'s weights can replace ``served``'s in place; else its first differences."""
    found = [
        f"{key}: served {served.config[key]!r}, checkpoint {candidate.config[key]!r}"
        for key in CONFIG_FIELDS
        if key in served.config and key in candidate.config and served.config[key] != candidate.config[key]
    ]
    for name in sorted(served.tensors.keys() | candidate.tensors.keys()):
        mine, theirs = served.tensors.get(name), candidate.tensors.get(name)
        if mine is None or theirs is None:
            if name == TIED_HEAD and served.tied and candidate.tied:
                continue  # a tied head may be stored or not: it is the embedding either way
            found.append(f"tensor {name}: only in the {'checkpoint' if mine is None else 'served model'}")
        elif mine.shape != theirs.shape:
            found.append(f"tensor {name}: shape served {mine.shape}, checkpoint {theirs.shape}")
        elif theirs.dtype not in FLOATING and mine.dtype in FLOATING:
            found.append(f"tensor {name}: dtype {theirs.dtype} where the served model has {mine.dtype}")
    return _summary(found)


def describe_adapter_mismatch(served: ModelSignature, adapter: Path, max_rank: int) -> str | None:
    """None when the LoRA adapter in ``adapter`` fits the served base: its rank within ``max_rank``, its
    target modules present in the base, and any embedding or head it carries of the base's vocabulary."""
    config = _config(adapter, "adapter_config.json")
    found: list[str] = []
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1 or rank > max_rank:
        found.append(f"rank r={rank!r}: the generator serves ranks 1..{max_rank} (POP_GENERATOR_MAX_LORA_RANK)")
    modules = served.modules()
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        if targets != "all-linear" and not any(re.fullmatch(targets, m) for m in modules):
            found.append(f"target_modules {targets!r} matches no module of the served model")
    else:
        missing = [t for t in targets if not any(m == t or m.endswith(f".{t}") for m in modules)]
        if missing:
            found.append(f"target_modules {sorted(missing)} are not modules of the served model")
    vocab = served.vocab_rows()
    weights = adapter / "adapter_model.safetensors"
    header = read_header(weights) if weights.is_file() else {}
    for name, spec in sorted(header.items()):
        rows = _vocab_dim(name, spec)
        if vocab is not None and rows is not None and rows != vocab:
            found.append(f"tensor {name}: a vocabulary of {rows}, the served model's is {vocab}")
    return _summary(found)


def _vocab_dim(name: str, spec: TensorSpec) -> int | None:
    """The vocabulary size an adapter tensor implies: an embedding's A is [r, vocab], a head's B is
    [vocab, r], a full (``modules_to_save``) embedding or head is [vocab, hidden]; others imply none."""
    if len(spec.shape) != 2:
        return None
    if "embed_tokens" in name:
        if "lora_embedding_A" in name:
            return spec.shape[1]
        return None if "lora_embedding_B" in name else spec.shape[0]
    if "lm_head" in name:
        return None if "lora_A" in name else spec.shape[0]
    return None


def _summary(found: list[str]) -> str | None:
    if not found:
        return None
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more
