"""Checkpoints: a Hugging Face folder plus a manifest, written under a temporary name and renamed.

A reader that sees ``v000003/`` sees a complete checkpoint: the rename is atomic and the manifest,
written last, holds the sha256 of every file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from shared.files import sha256_file
from shared.schemas import CheckpointManifest, WeightMode

MANIFEST = "manifest.json"


def version_dir(root: Path, run_id: str, version: int) -> Path:
    return root / run_id / f"v{version:06d}"


def save_checkpoint(
    model: Any, tokenizer: Any, root: Path, run_id: str, version: int, step: int, base_model: str
) -> tuple[Path, CheckpointManifest]:
    final = version_dir(root, run_id, version)
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = CheckpointManifest(
        run_id=run_id, version=version, step=step, base_model=base_model, mode=WeightMode.full, files=files
    )
    (tmp / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    if final.exists():  # a crashed earlier attempt at the same version: replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    return final, manifest


def prune(root: Path, run_id: str, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints of a run (0 keeps all)."""
    if keep <= 0:
        return
    versions = sorted(p for p in (root / run_id).glob("v*") if (p / MANIFEST).exists())
    for old in versions[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
