"""What a step writes, and when: rank 0 leads, the other ranks join the collective parts.

- The served version, every step, on the critical path (the swap waits for it): weights only, in the
  served dtype. Under FSDP the ranks first gather the whole weights onto rank 0.
- The resumable state, every ``trainer.resume_every`` steps and at the run's end or a pause, in the
  background: each rank stages its part to CPU memory and training goes on while it is written. One
  state is in flight at a time; the entries it covers are acknowledged once it is visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.trainer import sharding, state
from services.trainer.checkpoint import save_checkpoint, served_dtype
from services.trainer.parallel import Message, Replicas
from services.trainer.policy import Policy
from shared.config import RunConfig
from shared.modeling import resolve_model
from shared.schemas import CheckpointManifest
from shared.settings import TrainerSettings


class Saver:
    def __init__(self, run_id: str, config: RunConfig, settings: TrainerSettings, replicas: Replicas | None) -> None:
        self.run_id, self.config, self.settings, self.replicas = run_id, config, settings, replicas
        self.root = Path(settings.checkpoint_dir)
        self.dtype = served_dtype(settings.served_dtype, resolve_model(config.model, config.model_revision))
        self.pending: state.PendingState | None = None
        self.keep_gathered = False
        self.gathered: dict[str, Any] | None = None
        """FSDP under NCCL weight sync: the last served version's whole weights, which rank 0 then pushes."""

    def served(
        self, policy: Policy, version: int, step: int, consumed: list[str], dropped: dict[str, str]
    ) -> tuple[Path, CheckpointManifest]:
        weights = None
        if policy.sharded:
            self._tell(Message("gather"))
            weights = sharding.full_state_dict(policy.model)
            self.gathered = weights if self.keep_gathered else None
        cfg = self.config
        return save_checkpoint(
            policy.model, policy.tokenizer, self.root, self.run_id, version, step, cfg.model,
            cfg.trainer.weight_mode, state_dict=weights, dtype=self.dtype,
            shard_size=self.settings.served_shard_size, consumed=consumed, dropped=dropped,
        )  # fmt: skip

    def begin_state(self, policy: Policy, step: int, meta: dict[str, Any]) -> None:
        """Start writing the state of ``step`` (call ``finish_state`` first: one at a time)."""
        assert self.pending is None, "a resumable state is still being written"
        partial, final = state.begin(self.root, self.run_id, step)
        self._tell(Message("save_state", weights=partial))
        group = self.replicas.checkpoint_group if self.replicas is not None else None
        future = state.save_async(policy.model, policy.optimizer, partial, group)
        self.pending = state.PendingState(future, partial, final, {**meta, **state.rng_state()})

    @property
    def state_done(self) -> bool:
        return self.pending is not None and self.pending.future.done()

    def finish_state(self) -> state.Written | None:
        """Block until the state in flight is visible (None when none is); a thread's work."""
        pending, self.pending = self.pending, None
        return pending.finish() if pending is not None else None

    def restore(self, policy: Policy, written: state.Written) -> None:
        self._tell(Message("restore", weights=written.folder))
        group = self.replicas.checkpoint_group if self.replicas is not None else None
        state.load(policy.model, policy.optimizer, written.folder, group)
        state.set_rng_state(written.meta)

    def _tell(self, message: Message) -> None:
        if self.replicas is not None:
            self.replicas.broadcast(message)
