"""Checkpoints: a Hugging Face folder plus a manifest, written under a temporary name and renamed.

A reader that sees ``v000003/`` sees a complete checkpoint: the rename is atomic and the manifest,
written last, holds the sha256 of every file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from shared.files import sha256_file
from shared.schemas import CheckpointManifest, WeightMode

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.pt"


def version_dir(root: Path, run_id: str, version: int) -> Path:
    return root / run_id / f"v{version:06d}"


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    root: Path,
    run_id: str,
    version: int,
    step: int,
    base_model: str,
    trainer_state: dict[str, Any] | None = None,
    mode: WeightMode = WeightMode.full,
) -> tuple[Path, CheckpointManifest]:
    """The weights (a full model, or a peft adapter in LoRA mode), and (for resuming) the optimizer, counters,
    RNG and the stream entries this update used."""
    final = version_dir(root, run_id, version)
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if trainer_state is not None:
        torch.save(trainer_state, tmp / TRAINER_STATE)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = CheckpointManifest(
        run_id=run_id, version=version, step=step, base_model=base_model, mode=mode, files=files
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    if final.exists():  # a crashed earlier attempt at the same version: replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    return final, manifest


def latest_checkpoint(root: Path, run_id: str) -> tuple[Path, CheckpointManifest] | None:
    """The newest complete checkpoint of a run on disk (a folder without its manifest is not one)."""
    complete = sorted(p for p in (root / run_id).glob("v*") if (p / MANIFEST).is_file())
    if not complete:
        return None
    return complete[-1], CheckpointManifest.model_validate_json((complete[-1] / MANIFEST).read_text())


def load_trainer_state(folder: Path) -> dict[str, Any] | None:
    path = folder / TRAINER_STATE
    if not path.is_file():
        return None
    # weights_only: a restricted unpickler (tensors and plain containers), never arbitrary objects.
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def prune(root: Path, run_id: str, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints of a run (0 keeps all)."""
    if keep <= 0:
        return
    versions = sorted(p for p in (root / run_id).glob("v*") if (p / MANIFEST).exists())
    for old in versions[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
