"""Collapse watch: how varied the tasks, rubrics and answers of a run are, step by step.

Distinct-n (unique n-grams / all n-grams; Li et al., 2016) falls towards 0 as a policy starts
repeating itself, long before the mean reward says anything is wrong.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence

from shared.schemas import EpisodeGroup

_TOKEN = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Unique word n-grams over all n-grams of ``texts``; 0.0 when they hold none."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def group_metrics(groups: Sequence[EpisodeGroup]) -> dict[str, float]:
    """Per-step diversity: tasks across groups, answers within each group, and rubric size."""
    rubrics = [g.task.rubric for g in groups if g.task.rubric is not None]
    answers = [[e.completion.text for e in g.episodes] for g in groups]
    return {
        "task_distinct_2": distinct_n(g.task.prompt for g in groups),
        "answer_distinct_2": _mean([distinct_n(a) for a in answers]),
        "answer_words": _mean([len(t.split()) for a in answers for t in a]),
        "rubric_criteria": _mean([len(r.criteria) for r in rubrics]),
        "rubric_words": _mean([sum(len(f"{c.description} {c.gold}".split()) for c in r.criteria) for r in rubrics]),
    }
