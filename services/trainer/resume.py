"""Pick a run up where a dead trainer left it: the newest complete checkpoint on disk is the truth.

A checkpoint holds the weights and, in ``trainer_state.pt``, the optimizer, RNG, counters and the
stream entries its update consumed. Resuming (1) loads all of it, (2) acknowledges those entries
(the crash may have come between the checkpoint and the ack, and they must not train twice),
(3) reports the step to the gateway if the crash came before that, and (4) reclaims every entry
that was delivered but never acknowledged, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.trainer.checkpoint import latest_checkpoint, load_trainer_state
from services.trainer.parallel import Replicas
from services.trainer.policy import Policy
from services.trainer.retry import persist
from shared.api import RunRead, StepReport
from shared.clients.gateway import GatewayClient
from shared.modeling import resolve_model
from shared.settings import TrainerSettings
from shared.streams import Delivered, EpisodeStream

log = logging.getLogger(__name__)


@dataclass
class Resumed:
    policy: Policy
    step: int
    version: int
    counts: Counter[str] = field(default_factory=Counter)
    reclaimed: list[Delivered] = field(default_factory=list)


def trainer_state(
    policy: Policy, entry_ids: list[str], dropped: dict[str, str], counts: Counter[str], report: dict[str, Any]
) -> dict[str, Any]:
    """``dropped`` maps each dropped entry to why (stale, no_signal): an audit can account for each."""
    return {
        "policy": policy.state(),
        "entry_ids": entry_ids,
        "dropped_ids": list(dropped),
        "dropped_reasons": dropped,
        "counts": dict(counts),
        "report": report,
    }


async def resume(
    run: RunRead,
    settings: TrainerSettings,
    gateway: GatewayClient,
    stream: EpisodeStream,
    replicas: Replicas | None = None,
) -> Resumed:
    answer_tokens = run.config.selfplay.max_answer_tokens
    # The base model as a folder (a Hub id: its snapshot, fetched once per process at the run's revision).
    base = await asyncio.to_thread(resolve_model, run.config.model, run.config.model_revision)
    found = latest_checkpoint(Path(settings.checkpoint_dir), run.id)
    if found is None or found[1].version < run.policy_version or (run.policy_version == 0 and found is None):
        if run.policy_version > 0:
            raise RuntimeError(f"run {run.id} is at v{run.policy_version} but no checkpoint of it is on disk")
        policy = await asyncio.to_thread(Policy, base, run.config.trainer, answer_tokens, None, replicas)
        resumed = Resumed(policy, run.step, run.policy_version)
    else:
        folder, manifest = found
        policy = await asyncio.to_thread(Policy, base, run.config.trainer, answer_tokens, folder, replicas)
        state = await asyncio.to_thread(load_trainer_state, folder) or {}
        if "policy" in state:
            policy.load_state(state["policy"])
        consumed = [*state.get("entry_ids", []), *state.get("dropped_ids", [])]
        await persist("ack at resume", lambda: stream.ack(consumed), settings.retry_for_s)
        if manifest.version > run.policy_version:  # died after the checkpoint, before the gateway heard of it
            report = StepReport(checkpoint_path=str(folder), manifest=manifest, **state.get("report", {}))
            await persist("re-report", lambda: gateway.report_step(run.id, report), settings.retry_for_s)
        resumed = Resumed(policy, manifest.step, manifest.version, Counter(state.get("counts", {})))
        log.info("run %s resumes from %s (step %d)", run.id, folder, manifest.step)
    resumed.reclaimed = await stream.reclaim(settings.consumer_name, min_idle_ms=0)
    if resumed.reclaimed:
        resumed.counts["reclaimed"] += len(resumed.reclaimed)
        log.info("run %s: reclaimed %d unacknowledged groups", run.id, len(resumed.reclaimed))
    return resumed
