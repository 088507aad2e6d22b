"""Per-update metrics gathered over micro-batches: counts add up, everything else is a weighted mean."""

from __future__ import annotations

from collections import defaultdict

COUNTS = frozenset({"pairs", "episodes", "completion_tokens"})


class Metrics:
    def __init__(self) -> None:
        self._sums: defaultdict[str, float] = defaultdict(float)
        self._weights: defaultdict[str, float] = defaultdict(float)

    def add(self, values: dict[str, float], weight: float) -> None:
        """One micro-batch's metrics; ``weight`` is its share of the loss (its units)."""
        for key, value in values.items():
            if key in COUNTS:
                self._sums[key] += value
            else:
                self._sums[key] += value * weight
                self._weights[key] += weight

    def summary(self) -> dict[str, float]:
        return {k: v if k in COUNTS else v / max(self._weights[k], 1e-12) for k, v in self._sums.items()}
