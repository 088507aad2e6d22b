"""The resumable state of a run: fp32 weights, optimizer, RNG, counters and the stream entries it covers.

Written with ``torch.distributed.checkpoint`` (DCP): each rank writes its own shard (one file in a single
process; FSDP's shards as they lie; DDP's replicated tensors once), and a resume re-shards on load, so a
run can resume on another number of ranks. ``async_save`` copies the tensors to CPU memory and writes
them in a background thread while training goes on: only that copy is on a step's critical path.

``state/s000006/`` holds the DCP files and ``meta.pt``; it is written under a temporary name and
renamed once every rank's part and the meta are on disk, so a state that is visible is whole. The
trainer acknowledges stream entries only once a state that covers them is visible.
"""

from __future__ import annotations

import logging
import random
import shutil
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)
META = "meta.pt"
# A single-process trainer has no process group, which DCP points out at every save and load: it is the intent.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


def state_root(root: Path, run_id: str) -> Path:
    return root / run_id / "state"


def state_dir(root: Path, run_id: str, step: int) -> Path:
    return state_root(root, run_id) / f"s{step:06d}"


def _options(strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Frozen weights (LoRA's base) come back from the base model; only what training changes is state.
    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def _raw_optimizer(optimizer: Any) -> Any:
    """accelerate wraps the optimizer under data parallel; DCP wants the torch one."""
    return getattr(optimizer, "optimizer", optimizer)


def _state_dicts(model: Any, optimizer: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, _raw_optimizer(optimizer), options=_options())
    # A tied alias of a frozen weight (lm_head = embed_tokens) is no parameter of its own, so the option
    # above keeps it: drop every tensor that shares storage with a frozen parameter.
    frozen = {p.data_ptr() for p in model.parameters() if not p.requires_grad and type(p) is torch.nn.Parameter}
    model_sd = {k: v for k, v in model_sd.items() if type(v) is not torch.Tensor or v.data_ptr() not in frozen}
    return {"model": model_sd, "optim": optim_sd}


def save_async(model: Any, optimizer: Any, folder: Path, process_group: Any = None) -> Future[Any]:
    """This rank's part of the state, into ``folder``: staged to CPU now, written in the background.
    Every rank calls it (it plans collectively over ``process_group``, a gloo group beside the training one)."""
    from torch.distributed.checkpoint.state_dict_saver import AsyncSaveResponse, async_save

    folder.mkdir(parents=True, exist_ok=True)
    saved = async_save(_state_dicts(model, optimizer), checkpoint_id=str(folder), process_group=process_group)
    return saved.upload_completion if isinstance(saved, AsyncSaveResponse) else saved


def load(model: Any, optimizer: Any, folder: Path, process_group: Any = None) -> None:
    """Every rank reads its part of ``folder`` into the model and optimizer it holds (re-sharding as needed)."""
    from torch.distributed.checkpoint.state_dict import set_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    state = _state_dicts(model, optimizer)
    dcp_load(state, checkpoint_id=str(folder), process_group=process_group)
    set_state_dict(
        model, _raw_optimizer(optimizer), model_state_dict=state["model"], optim_state_dict=state["optim"],
        options=_options(strict=False),  # frozen weights stay as loaded; DCP has already read every key asked
    )  # fmt: skip


def rng_state() -> dict[str, Any]:
    return {"torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}


def set_rng_state(meta: dict[str, Any]) -> None:
    if "torch_rng" in meta:
        torch.set_rng_state(meta["torch_rng"])
        random.setstate(meta["python_rng"])


@dataclass
class Written:
    folder: Path
    meta: dict[str, Any]


class PendingState:
    """One state being written in the background; ``finish`` makes it visible."""

    def __init__(self, future: Future[Any], partial: Path, final: Path, meta: dict[str, Any]) -> None:
        self.future, self.partial, self.final, self.meta = future, partial, final, meta

    def finish(self) -> Written:
        """Block until every rank's part is written (the coordinator writes DCP's metadata last), then the
        meta, then the rename. Older states are removed: only the newest is ever resumed from."""
        self.future.result()
        torch.save(self.meta, self.partial / META)
        if self.final.exists():  # a state of the same step from before a rewind: replace it whole
            shutil.rmtree(self.final)
        self.partial.rename(self.final)
        for old in self.final.parent.glob("s*"):
            if old.name < self.final.name:
                shutil.rmtree(old, ignore_errors=True)
        return Written(self.final, self.meta)


def begin(root: Path, run_id: str, step: int) -> tuple[Path, Path]:
    """A fresh temporary folder for the state of ``step``, and its final name."""
    final = state_dir(root, run_id, step)
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial, final


def latest(root: Path, run_id: str) -> Written | None:
    """The newest complete state of a run (a folder without its meta is not one)."""
    complete = sorted(p for p in state_root(root, run_id).glob("s*") if (p / META).is_file())
    if not complete:
        return None
    # weights_only: a restricted unpickler (tensors and plain containers), never arbitrary objects.
    return Written(complete[-1], torch.load(complete[-1] / META, map_location="cpu", weights_only=True))


def discard_newer(root: Path, run_id: str, step: int) -> None:
    """States past ``step`` and unfinished ones: what a dead trainer left half-written."""
    for folder in state_root(root, run_id).glob("*s*"):
        if folder.name.startswith(".") or folder.name > f"s{step:06d}":
            shutil.rmtree(folder, ignore_errors=True)
