"""Pick a run up where a dead (or paused) trainer left it: the newest resumable state is the truth.

A state (services/trainer/state.py) holds the fp32 weights, optimizer, RNG, counters and the stream
entries it covers. Resuming (1) loads it, (2) acknowledges those entries (the crash may have come
between the state and the ack), (3) takes the gateway back to the state's step when later steps were
reported (``resume_every`` > 1: their entries were never acknowledged, so they are retrained and their
versions rewritten), and (4) reclaims every entry delivered but never acknowledged, so none is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from services.trainer import state
from services.trainer.checkpoint import read_manifest, remove_version, version_dir, versions_on_disk
from services.trainer.parallel import Replicas
from services.trainer.policy import Policy
from services.trainer.retry import persist
from services.trainer.saving import Saver
from shared.api import RewindCommand, RunRead, StepReport
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
    rewound: bool = False
    """The gateway was taken back: the generator may serve a version that is about to be rewritten."""


async def resume(
    run: RunRead,
    settings: TrainerSettings,
    gateway: GatewayClient,
    stream: EpisodeStream,
    saver: Saver,
    replicas: Replicas | None = None,
) -> Resumed:
    root = Path(settings.checkpoint_dir)
    answer_tokens = run.config.selfplay.max_answer_tokens
    # The base model as a folder (a Hub id: its snapshot, fetched once per process at the run's revision).
    base = await asyncio.to_thread(resolve_model, run.config.model, run.config.model_revision)
    policy = await asyncio.to_thread(Policy, base, run.config.trainer, answer_tokens, None, replicas)
    found = await asyncio.to_thread(state.latest, root, run.id)
    resumed = Resumed(policy, 0, 0)
    if found is not None:
        await asyncio.to_thread(saver.restore, policy, found)
        meta = found.meta
        await persist("ack at resume", lambda: stream.ack(list(meta["covered"])), settings.retry_for_s)
        resumed = Resumed(policy, int(meta["step"]), int(meta["version"]), Counter(meta.get("counts", {})))
        log.info("run %s resumes from %s (step %d)", run.id, found.folder, resumed.step)
    state.discard_newer(root, run.id, resumed.step)
    if run.step > resumed.step:
        await _rewind(run, resumed, gateway, root, settings.retry_for_s)
    elif run.step < resumed.step and found is not None:  # the gateway lost the report of the state's own step
        folder = version_dir(root, run.id, resumed.version)
        report = StepReport(checkpoint_path=str(folder), manifest=read_manifest(folder), **found.meta["report"])
        await persist("re-report", lambda: gateway.report_step(run.id, report), settings.retry_for_s)
    resumed.reclaimed = await stream.reclaim(settings.consumer_name, min_idle_ms=0)
    if resumed.reclaimed:
        resumed.counts["reclaimed"] += len(resumed.reclaimed)
        log.info("run %s: reclaimed %d unacknowledged groups", run.id, len(resumed.reclaimed))
    return resumed


async def _rewind(run: RunRead, resumed: Resumed, gateway: GatewayClient, root: Path, retry_for_s: float) -> None:
    """Steps after the state were reported but never covered: forget them, here and at the gateway."""
    command = RewindCommand(step=resumed.step, policy_version=resumed.version)
    await persist("rewind", lambda: gateway.rewind_run(run.id, command), retry_for_s)
    for version in versions_on_disk(root, run.id):
        if version > resumed.version:
            await asyncio.to_thread(remove_version, root, run.id, version)
    resumed.counts["rewound_steps"] += run.step - resumed.step
    resumed.rewound = True
    log.warning("run %s: rewound from step %d to step %d (resumable state)", run.id, run.step, resumed.step)
