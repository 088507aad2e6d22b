"""The two scoring rules, one per rubric format.

pop (the method's): score = Σ wᵢ·ratingᵢ / Σ wᵢ, in [0, 2].
healthbench: score = Σ points of met criteria / Σ positive points; pitfalls (negative points) can
push an answer below 0; over a set of examples the mean is clipped to [0, 1].

An answer missing a verdict for any criterion is invalid (None), never a silent 0: a 0 would
teach the policy that the answer was bad when the judge simply failed to read it.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from shared.schemas import Criterion, RubricFormat, Verdict


def weighted_score(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> float | None:
    by_name = {v.criterion: v.rating for v in verdicts}
    if not criteria or any(c.name not in by_name for c in criteria):
        return None
    total = sum(c.weight for c in criteria)
    return sum(c.weight * by_name[c.name] for c in criteria) / total


def healthbench_score(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> float | None:
    met = {v.criterion: v.met if v.met is not None else v.rating == 2 for v in verdicts}
    positive = sum(c.points for c in criteria if c.points and c.points > 0)
    if not positive or any(c.name not in met for c in criteria):
        return None
    return sum(c.points or 0 for c in criteria if met[c.name]) / positive


def score(rubric_format: RubricFormat, criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> float | None:
    rule = healthbench_score if rubric_format == "healthbench" else weighted_score
    return rule(criteria, verdicts)


def healthbench_overall(scores: Iterable[float | None]) -> float | None:
    """HealthBench's aggregate: the mean over gradeable examples, clipped to [0, 1]."""
    valid = [s for s in scores if s is not None]
    return min(1.0, max(0.0, statistics.fmean(valid))) if valid else None
