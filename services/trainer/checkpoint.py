"""Served versions: what the generator loads, and nothing else.

A version is a Hugging Face folder in the served dtype (sharded safetensors with an index once it is
larger than one shard), the tokenizer, and a manifest holding the sha256 of every file, written last;
the folder is written under a temporary name and renamed, so a reader that sees ``v000003/`` sees it
whole. The optimizer, fp32 master weights and stream position live apart, in the resumable state
(``services/trainer/state.py``), written every few steps: a version is a fraction of that size.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from shared.files import sha256_file
from shared.schemas import CheckpointManifest, WeightMode

MANIFEST = "manifest.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def version_dir(root: Path, run_id: str, version: int) -> Path:
    return root / run_id / f"v{version:06d}"


def stored_dtype(model_path: str) -> torch.dtype:
    """The dtype a model's config says its weights are stored in (what vLLM's ``--dtype auto`` serves)."""
    config = json.loads((Path(model_path) / "config.json").read_text())
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return DTYPES.get(str(name), torch.float32)


def served_dtype(setting: str, model_path: str) -> torch.dtype:
    return stored_dtype(model_path) if setting == "auto" else DTYPES[setting]


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    root: Path,
    run_id: str,
    version: int,
    step: int,
    base_model: str,
    mode: WeightMode = WeightMode.full,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    shard_size: str = "5GB",
    consumed: Sequence[str] = (),
    dropped: Mapping[str, str] | None = None,
) -> tuple[Path, CheckpointManifest]:
    """Write version ``version``: full weights cast to ``dtype`` (``state_dict``: the gathered weights of a
    sharded model; default the model's own), or a peft adapter in LoRA mode. ``consumed``/``dropped``: the
    stream entries the update read, recorded as the version's provenance."""
    final = version_dir(root, run_id, version)
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    served: torch.dtype | None = None
    if mode is WeightMode.lora:
        model.save_pretrained(tmp, safe_serialization=True)
    else:
        weights = dict(state_dict if state_dict is not None else model.state_dict())
        served = dtype or next((v.dtype for v in weights.values() if v.is_floating_point()), torch.float32)
        cast = {k: v.detach().to("cpu", served) if v.is_floating_point() else v for k, v in weights.items()}
        model.save_pretrained(tmp, state_dict=cast, safe_serialization=True, max_shard_size=shard_size)
        config = copy.deepcopy(model.config)  # the master weights are fp32; the folder says what it holds
        config.dtype = served
        config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    manifest = CheckpointManifest(
        run_id=run_id, version=version, step=step, base_model=base_model, mode=mode, files=checksums(tmp),
        dtype=str(served).removeprefix("torch.") if served is not None else None,
        consumed=list(consumed), dropped=dict(dropped or {}),
    )  # fmt: skip
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    if final.exists():  # a crashed earlier attempt, or a version rewritten after a rewind: replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    return final, manifest


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file, shards hashed in parallel (hashlib releases the GIL)."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(files)))) as pool:
        return dict(zip((p.name for p in files), pool.map(sha256_file, files), strict=True))


def read_manifest(folder: Path) -> CheckpointManifest:
    return CheckpointManifest.model_validate_json((folder / MANIFEST).read_text())


def versions_on_disk(root: Path, run_id: str) -> list[int]:
    """Complete versions (a folder without its manifest is not one), oldest first."""
    return sorted(int(p.name[1:]) for p in (root / run_id).glob("v*") if (p / MANIFEST).is_file())


def remove_version(root: Path, run_id: str, version: int) -> None:
    """Gone whole or not at all for readers: renamed away first, then deleted."""
    folder = version_dir(root, run_id, version)
    if folder.exists():
        doomed = folder.with_name(f".{folder.name}.removed")
        shutil.rmtree(doomed, ignore_errors=True)
        folder.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
