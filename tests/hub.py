"""A model "on the Hub" without a hub: files planted in a Hugging Face cache exactly as
huggingface_hub lays them out, so the Hub path (``org/name`` -> snapshot) runs for real, offline.

    <cache>/models--org--name/blobs/<sha256>                    the bytes, once
    <cache>/models--org--name/snapshots/<commit>/<file>         -> ../../blobs/<sha256>
    <cache>/models--org--name/refs/<branch or tag>              the commit it points at
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from shared.modeling import resolve_model

COMMIT = "1" * 40
"""The commit ``main`` points at in a planted repo (a 40-hex-digit hash, as the Hub's)."""


def plant(
    cache: Path, repo_id: str, source: Path, commit: str = COMMIT, refs: Iterable[str] = ("main",), skip: str = ""
) -> Path:
    """Plant the files of ``source`` (except names ending in ``skip``) as ``repo_id`` at ``commit``; each of
    ``refs`` then names that commit. Returns the snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for file in sorted(source.rglob("*")):
        if not file.is_file() or (skip and file.name.endswith(skip)):
            continue
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def plant_tiny(hf_home: Path, repo_id: str = "org/tiny") -> Path:
    """The tiny model (built once, as ``pop/tiny``) as ``repo_id`` in ``$HF_HOME/hub``."""
    return plant(hf_home / "hub", repo_id, Path(resolve_model("pop/tiny")))
