"""Where a step's reward came from: the mean by task type, and how criterion verdicts split.

A mean reward can rise because one task type got easier while another collapsed, or because
partial credit crept up without any criterion being met; these series show which."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from shared.schemas import EpisodeGroup

RATING_NAMES = {2: "met", 1: "partial", 0: "missed"}


def reward_breakdown(groups: Sequence[EpisodeGroup]) -> dict[str, float]:
    """``reward_mean/<task_type>`` and ``rubric_<met|partial|missed>_rate`` over every verdict."""
    by_type: defaultdict[str, list[float]] = defaultdict(list)
    ratings: list[int] = []
    for group in groups:
        for episode in group.episodes:
            if episode.reward is not None:
                by_type[group.task.task_type].append(episode.reward)
            ratings += [int(v.rating) for v in episode.verdicts]
    metrics = {f"reward_mean/{t}": statistics.fmean(r) for t, r in sorted(by_type.items())}
    if ratings:
        for rating, name in RATING_NAMES.items():
            metrics[f"rubric_{name}_rate"] = ratings.count(rating) / len(ratings)
    return metrics
