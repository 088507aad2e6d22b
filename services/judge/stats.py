"""What the judge has done since it started: served at ``GET /v1/stats`` and ``GET /metrics``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prometheus_client import CollectorRegistry, Counter


@dataclass
class JudgeStats:
    groups: int = 0
    rubrics_written: int = 0
    rubrics_failed: int = 0
    """Groups whose rubric was still out of bounds after every retry (answered 502)."""
    llm_calls: int = 0
    """Verdict calls to the scorer (rubric calls are counted by ``rubrics_*`` and ``rubric_retries``)."""
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

    def registry(self) -> CollectorRegistry:
        """These numbers as Prometheus counters, built at scrape time so they are exactly the stats."""
        registry = CollectorRegistry()

        def counter(name: str, help_: str, value: int) -> None:
            Counter(name, help_, registry=registry).inc(value)

        counter("pop_judge_groups", "Grade requests (groups) received.", self.groups)
        rubrics = Counter(
            "pop_judge_rubrics", "Rubrics written by the judge, by outcome.", ["outcome"], registry=registry
        )
        rubrics.labels("written").inc(self.rubrics_written)
        rubrics.labels("failed").inc(self.rubrics_failed)
        counter("pop_judge_rubric_retries", "Rubric re-asks after an out-of-bounds rubric.", self.rubric_retries)
        counter("pop_judge_verdict_calls", "Verdict calls to the scoring LLM.", self.llm_calls)
        counter("pop_judge_verdict_retries", "Verdict re-asks after a malformed verdict.", self.verdict_retries)
        counter(
            "pop_judge_invalid_answers", "Answers left ungradeable (no score) after every re-ask.", self.ungradeable
        )
        counter("pop_judge_deduplicated", "Gradings answered from an identical answer in the group.", self.deduplicated)
        rejected = Counter(
            "pop_judge_rejections", "Rejected rubric attempts, by reason.", ["reason"], registry=registry
        )
        for reason, n in self.by_reason.items():
            rejected.labels(reason).inc(n)
        return registry
