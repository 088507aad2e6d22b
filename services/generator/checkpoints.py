"""What a swap checks before it touches the served weights: the path (confined to the weight roots),
the files (a loadable checkpoint), their checksums, and that the checkpoint fits the served model.

Every check here runs before generation is paused, so a refusal never costs the replica anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.files import sha256_file
from shared.modeling.signature import (
    ModelSignature,
    SignatureError,
    describe_adapter_mismatch,
    describe_mismatch,
    model_signature,
)
from shared.schemas import WeightMode


class SwapError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


ADAPTER_WEIGHTS, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
INDEX = "model.safetensors.index.json"


def confine(raw: str, roots: Sequence[Path]) -> Path:
    """The folder ``raw`` names, once symlinks are resolved, if it and every file in it lie under the
    ``roots``: a swap request can make the server read only checkpoints and models, never any file it
    can reach. A Hugging Face snapshot passes: its files link into the same cache's ``blobs/``."""
    path = Path(raw)
    if not path.is_absolute() or ".." in path.parts:
        raise SwapError(400, "Checkpoint path refused", f"{raw!r}: an absolute path without '..' is required")
    real = _inside(raw, path, roots)
    if real.is_dir():
        for entry in real.iterdir():
            _inside(f"{raw}/{entry.name}", entry, roots)
    return real


def _inside(raw: str, path: Path, roots: Sequence[Path]) -> Path:
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise SwapError(
            400, "Checkpoint path refused", f"{raw} resolves to {real}, outside the weight roots ({allowed})"
        )
    return real


def check_checkpoint(path: Path, mode: WeightMode = WeightMode.full) -> list[Path]:
    """Refuse a folder that could not load fully, before touching the served weights; return the files
    the engine will read (every safetensors shard and its index; for LoRA the adapter and its config)."""
    if not path.is_dir():
        raise SwapError(400, "Checkpoint not found", f"no checkpoint directory at {path}")
    if mode is WeightMode.lora:
        if not (path / ADAPTER_WEIGHTS).is_file() or not (path / ADAPTER_CONFIG).is_file():
            raise SwapError(400, "Checkpoint incomplete", f"{path} holds no {ADAPTER_WEIGHTS} + {ADAPTER_CONFIG}")
        return [path / ADAPTER_WEIGHTS, path / ADAPTER_CONFIG]
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise SwapError(400, "Checkpoint incomplete", f"{path} holds no *.safetensors file")
    index = path / INDEX
    if index.is_file():
        try:
            named = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError) as exc:
            raise SwapError(400, "Checkpoint incomplete", f"{index} is not a safetensors index: {exc!r}") from exc
        missing = sorted(named - {p.name for p in shards})
        if missing:
            raise SwapError(400, "Checkpoint incomplete", f"{path} lacks the shards its index names: {missing}")
        return [*shards, index]
    return shards


def verify_checksums(files: Sequence[Path], checksums: Mapping[str, str]) -> None:
    """Every file the engine will read matches the manifest's sha256 (read in parallel: hashlib releases the
    GIL, so shards hash at the disk's pace); none is skipped. No checksums (a base model): nothing to check."""
    if not checksums:
        return
    unlisted = [f.name for f in files if f.name not in checksums]
    if unlisted:
        raise SwapError(400, "Checkpoint checksum mismatch", f"no sha256 in the manifest for {unlisted}")
    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        digests = dict(zip(files, pool.map(sha256_file, files), strict=True))
    for path, actual in digests.items():
        if actual != checksums[path.name]:
            detail = f"{path.name}: sha256 {actual} != expected {checksums[path.name]}"
            raise SwapError(400, "Checkpoint checksum mismatch", detail)


NOT_FIT = "Checkpoint does not fit the served model"


def check_fit(served: ModelSignature, path: Path, mode: WeightMode, max_lora_rank: int) -> None:
    """Refuse (409) a checkpoint whose shapes differ from the served model's: an in-place reload of such
    weights kills vLLM's engine (issue 19), and with it the replica, past any restore."""
    try:
        if mode is WeightMode.lora:
            detail = describe_adapter_mismatch(served, path, max_lora_rank)
        else:
            detail = describe_mismatch(served, model_signature(path))
    except SignatureError as exc:
        raise SwapError(400, "Checkpoint unreadable", str(exc)) from exc
    if detail is not None:
        raise SwapError(409, NOT_FIT, detail)
