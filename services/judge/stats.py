"""What the judge has done since it started: served at ``GET /v1/stats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class JudgeStats:
    groups: int = 0
    llm_calls: int = 0
    deduplicated: int = 0
    """(criterion, answer) gradings answered from an identical one in the same group."""
    rubric_retries: int = 0
    verdict_retries: int = 0
    ungradeable: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
