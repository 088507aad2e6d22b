"""The method's scoring rule: score = Σ wᵢ·ratingᵢ / Σ wᵢ, in [0, 2].

An answer missing a verdict for any criterion is invalid (None), never a silent 0: a 0 would
teach the policy that the answer was bad when the judge simply failed to read it.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.schemas import Criterion, Verdict


def weighted_score(criteria: Sequence[Criterion], verdicts: Sequence[Verdict]) -> float | None:
    by_name = {v.criterion: v.rating for v in verdicts}
    if not criteria or any(c.name not in by_name for c in criteria):
        return None
    total = sum(c.weight for c in criteria)
    return sum(c.weight * by_name[c.name] for c in criteria) / total
