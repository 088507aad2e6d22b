"""Resolve a model name to a local folder that ``from_pretrained`` and vLLM load, the same in every service.

Three kinds of name: ``pop/...`` aliases name models this project builds without a hub (built once
into ``POP_MODELS_DIR`` under a file lock and reused); an existing folder is used as it is; anything
else is a Hub id such as ``Qwen/Qwen2.5-7B-Instruct``, resolved once per process to a snapshot in the
Hugging Face cache (``shared.modeling.hub``). A folder, not a name, is what every service passes on:
the gateway sends it to the generator for version 0, and the generator confines swaps to folders.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from shared.modeling import hub
from shared.modeling.hub import ModelError

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


def resolve_model(name: str, revision: str | None = None) -> str:
    """The local folder of ``name`` (at ``revision``, for a Hub id), building or downloading it on first
    use; raises ``ModelError`` naming the model, the revision and what to do when there is none."""
    kind = _kind(name, revision)
    if kind == "alias":
        return _build(name)
    if kind == "folder":
        return str(Path(name).expanduser().absolute())
    return str(_hub_snapshot(name, revision))


def check_model(name: str, revision: str | None = None) -> None:
    """Cheaply, that ``resolve_model`` would succeed: no alias is built and no weights are fetched (a
    Hub id is looked up in the cache, else in the Hub's file listing). Raises ``ModelError``."""
    kind = _kind(name, revision)
    if kind == "hub":
        hub.check(name, revision)
    elif kind == "folder" and not (Path(name).expanduser() / "config.json").is_file():
        raise ModelError(name, revision, "the folder holds no config.json: it is no transformers model")


def local_model(name: str, revision: str | None = None) -> Path | None:
    """The folder ``name`` is already in on this machine (an alias is built), or None: nothing is fetched."""
    kind = _kind(name, revision)
    if kind == "hub":
        try:
            return hub.download(name, revision, local_only=True)
        except ModelError:
            return None
    return Path(resolve_model(name, revision))


def _kind(name: str, revision: str | None) -> str:
    if name.startswith("pop/"):
        if name not in BUILTIN_MODELS:
            raise ModelError(name, revision, f"no such built-in model; the pop/ aliases are {sorted(BUILTIN_MODELS)}")
        kind = "alias"
    elif _is_folder(name):
        kind = "folder"
    elif not name.strip() or name.startswith(("/", "./", "../", "~")):
        raise ModelError(name, revision, "no such folder (a path must name an existing model folder)")
    else:
        return "hub"
    if revision is not None:
        why = f"a revision applies to Hub ids only, and this is a {'built-in model' if kind == 'alias' else 'folder'}"
        raise ModelError(name, revision, why, field="model_revision")
    return kind


def _is_folder(name: str) -> bool:
    try:
        return bool(name.strip()) and Path(name).expanduser().is_dir()
    except (OSError, ValueError):  # a name too long or holding a NUL byte is no folder
        return False


@functools.cache
def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """Once per process: every later use (the trainer's next run, the gateway's next swap) is free."""
    return hub.download(repo_id, revision)


def _build(name: str) -> str:
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
