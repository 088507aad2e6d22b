"""Resolve a model name to something ``from_pretrained`` and vLLM accept.

``pop/...`` aliases name models this project builds offline (no hub here): they are built once
into ``POP_MODELS_DIR`` under a file lock and reused. Anything else (a hub id such as
``Qwen/Qwen2.5-7B-Instruct`` or a local path) passes through unchanged, so a GPU user only
changes the name.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

Builder = Callable[[Path], None]


def _build_tiny(dest: Path) -> None:
    from shared.modeling.tiny import build_tiny_model

    build_tiny_model(dest)


def _build_smollm2(dest: Path) -> None:
    from shared.modeling.smollm2 import build_smollm2

    build_smollm2(dest)


BUILTIN_MODELS: dict[str, tuple[str, Builder]] = {
    "pop/tiny": ("tiny-qwen2", _build_tiny),
    "pop/smollm2-135m-instruct": ("SmolLM2-135M-Instruct", _build_smollm2),
}


def models_dir() -> Path:
    default = Path(__file__).resolve().parents[2] / "models"
    return Path(os.environ.get("POP_MODELS_DIR", str(default))).resolve()


def resolve_model(name: str) -> str:
    """Return a loadable id or path for ``name``, building a built-in model on first use."""
    if name not in BUILTIN_MODELS:
        return name
    folder, build = BUILTIN_MODELS[name]
    root = models_dir()
    dest = root / folder
    if (dest / "config.json").exists():
        return str(dest)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{folder}.lock")):
        if not (dest / "config.json").exists():
            tmp = root / f".{folder}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            build(tmp)
            tmp.rename(dest)
    return str(dest)
