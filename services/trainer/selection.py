"""Which groups carry a learning signal, and what signal: pure functions, unit-tested by hand.

DPO takes each group's extreme pair (the paper's recipe); GRPO takes every answer with its
group-normalised advantage. Invalid answers (no score) never enter either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.schemas import Episode, EpisodeGroup


@dataclass(frozen=True)
class Pair:
    chosen: Episode
    rejected: Episode


def valid_episodes(group: EpisodeGroup) -> list[Episode]:
    return [e for e in group.episodes if e.reward is not None]


def words(episode: Episode) -> int:
    return len(episode.completion.text.split())


def select_pair(group: EpisodeGroup, max_length_diff_words: int) -> Pair | None:
    """Best vs worst answer; None when scores don't vary or the pair invites length hacking."""
    scored = valid_episodes(group)
    if len(scored) < 2:
        return None
    best = max(scored, key=lambda e: (e.reward, -words(e)))
    worst = min(scored, key=lambda e: (e.reward, words(e)))
    if best.reward == worst.reward:
        return None
    if abs(words(best) - words(worst)) > max_length_diff_words:
        return None
    return Pair(best, worst)


def group_advantages(rewards: list[float], scale: bool = True, eps: float = 1e-6) -> list[float]:
    """(r - mean) / std within the group; constant rewards give zeros, never NaN."""
    if not rewards:
        return []
    mean = sum(rewards) / len(rewards)
    centred = [r - mean for r in rewards]
    if not scale:
        return centred
    std = math.sqrt(sum(c * c for c in centred) / len(rewards))
    if std < eps:
        return [0.0] * len(rewards)
    return [c / std for c in centred]


def with_advantages(group: EpisodeGroup, scale: bool) -> list[Episode]:
    """Valid episodes with their advantage set; an all-zero group carries no signal and yields []."""
    scored = valid_episodes(group)
    advantages = group_advantages([float(e.reward or 0.0) for e in scored], scale)
    if not any(advantages):
        return []
    return [e.model_copy(update={"advantage": a}) for e, a in zip(scored, advantages, strict=True)]
