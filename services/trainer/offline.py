"""The paper's own recipe: one offline DPO pass over a saved set of scored groups.

``python -m services.trainer offline --config run.yaml --episodes groups.jsonl --out DIR``. The
episode file is what ``pop episodes RUN_ID`` exports from a run's stream (one ``EpisodeGroup`` a
line). Each group gives its extreme pair (best vs worst; no-variance and length-hacking pairs
dropped, as online); pairs are shuffled with the run's seed, trained in batches of
``groups_per_step`` for one epoch, and the result is written as one checkpoint. The reference's
log-probs of every pair are computed before the first update and the reference is then freed (TRL's
``precompute_ref_log_probs``): the pass never holds it beside gradients and optimizer moments.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.trainer.checkpoint import save_checkpoint
from services.trainer.policy import Policy
from shared.config import DPOConfig, RunConfig
from shared.modeling import resolve_model
from shared.schemas import CheckpointManifest, EpisodeGroup

log = logging.getLogger(__name__)
OFFLINE_RUN_ID = "offline"


def read_groups(path: Path) -> Iterator[EpisodeGroup]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield EpisodeGroup.model_validate_json(line)
                except ValueError as exc:
                    raise ValueError(f"{path}:{lineno}: not an episode group: {exc}") from exc


def train_offline(
    config: RunConfig, episodes: Path, out: Path
) -> tuple[Path, CheckpointManifest, list[dict[str, Any]]]:
    """One epoch of DPO over the usable groups of ``episodes``; returns the checkpoint and per-batch metrics."""
    if not isinstance(config.trainer.algorithm, DPOConfig):
        raise ValueError("offline training is the paper's DPO recipe: set trainer.algorithm.name to dpo")
    base = resolve_model(config.model, config.model_revision)
    policy = Policy(base, config.trainer, config.selfplay.max_answer_tokens)
    groups = [g for g in read_groups(episodes) if policy.usable(g)]
    if not groups:
        raise ValueError(f"{episodes} holds no group with a usable pair (scores that vary, lengths within bounds)")
    random.Random(config.selfplay.seed).shuffle(groups)
    # All pairs are known up front: their reference log-probs are computed once and the reference freed.
    answers = policy.precompute_reference(groups)
    log.info("offline: reference log-probs of %d answers precomputed; reference freed", answers)
    size = config.trainer.groups_per_step
    history = []
    for step, start in enumerate(range(0, len(groups), size), start=1):
        result = policy.update(groups[start : start + size])
        history.append({"step": step, **result.metrics})
        log.info("offline step %d: loss %.4f", step, result.loss)
    path, manifest = save_checkpoint(policy.model, policy.tokenizer, out, OFFLINE_RUN_ID, 1, len(history), config.model)
    (path.parent / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return path, manifest, history
