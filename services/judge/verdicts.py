"""The LLM backend: rate answers on criteria, all criteria in one call or one call per criterion.

A malformed or refused reply is re-asked (sampled, since a greedy re-ask repeats itself) a bounded
number of times; after that the answer is "ungradeable" and scores None, never 0.
"""

from __future__ import annotations

from typing import Any

from services.judge import prompts
from services.judge.stats import JudgeStats
from shared.clients.llm import ChatClient
from shared.schemas import Criterion, RubricFormat, Verdict


def read_verdicts(
    data: dict[str, Any] | None, criteria: list[Criterion], rubric_format: RubricFormat, backend: str
) -> list[Verdict] | None:
    """The verdicts in a reply, or None when any criterion's is missing or out of range."""
    if data is None:
        return None
    verdicts = []
    for i, criterion in enumerate(criteria, start=1):
        item = data.get(f"criterion_{i}")
        if not isinstance(item, dict):
            return None
        reason = str(item.get("reason", ""))
        if rubric_format == "healthbench":
            met = item.get("met")
            if not isinstance(met, bool):
                return None
            verdicts.append(Verdict(criterion=criterion.name, rating=2 if met else 0, met=met, reason=reason))
        else:
            rating = item.get("rating")
            if rating not in (0, 1, 2) or isinstance(rating, bool):
                return None
            verdicts.append(Verdict(criterion=criterion.name, rating=rating, reason=reason))
    return [v.model_copy(update={"backend": backend}) for v in verdicts]


class LLMScorer:
    def __init__(self, llm: ChatClient, retries: int, retry_temperature: float, stats: JudgeStats) -> None:
        self.llm, self.retries, self.retry_temperature, self.stats = llm, retries, retry_temperature, stats

    async def rate(
        self, task: str, criteria: list[Criterion], answer: str, guidance: str, rubric_format: RubricFormat
    ) -> list[Verdict] | None:
        """One call rating ``criteria`` (one or all of them); None once the retries are spent."""
        messages = prompts.score_messages(task, criteria, answer, guidance, rubric_format)
        schema = prompts.verdict_schema(len(criteria), rubric_format)
        backend = f"llm:{self.llm.model}"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.verdict_retries += 1
            self.stats.llm_calls += 1
            temperature = 0.0 if attempt == 0 else self.retry_temperature
            data, _ = await self.llm.json_chat(
                messages, schema, prompts.verdict_token_bound(len(criteria)), temperature
            )
            verdicts = read_verdicts(data, criteria, rubric_format, backend)
            if verdicts is not None:
                return verdicts
        return None
