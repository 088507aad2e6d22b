"""Write a rubric from the document, the task, the reference and a spread of the answers.

A written rubric must be within bounds (1-5 criteria, weights 1-5, a gold fact on each); one that
is not is rejected, counted by reason, and rewritten, a bounded number of times.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from services.judge import prompts
from services.judge.stats import JudgeStats
from shared.clients.llm import ChatClient
from shared.schemas import Criterion, GradeRequest, Rubric, unique_names

log = logging.getLogger(__name__)


class RubricError(Exception):
    """The rubric writer gave no usable rubric within its retries."""


def out_of_bounds(data: dict[str, Any] | None) -> str | None:
    """Why a written rubric is unusable, or None."""
    if data is None or not isinstance(data.get("criteria"), list):
        return "unparseable"
    items = data["criteria"]
    if not 1 <= len(items) <= prompts.MAX_CRITERIA:
        return "criteria_count"
    for item in items:
        if not isinstance(item, dict) or not str(item.get("name", "")).strip():
            return "unnamed_criterion"
        if not str(item.get("gold", "")).strip():
            return "empty_gold"
        if item.get("weight") not in (1, 2, 3, 4, 5):
            return "weight_out_of_range"
    return None


async def write_rubric(
    llm: ChatClient, request: GradeRequest, retries: int, retry_temperature: float, stats: JudgeStats, spread: int = 4
) -> Rubric:
    samples = prompts.answer_spread(request.answers, spread)
    messages = prompts.rubric_messages(
        request.document, request.task, request.reference, samples, request.rubric_guidance
    )
    for attempt in range(retries + 1):
        if attempt:
            stats.rubric_retries += 1
        temperature = 0.0 if attempt == 0 else retry_temperature  # greedy first, as the method writes
        data, raw = await llm.json_chat(messages, prompts.rubric_schema(), prompts.rubric_token_bound(), temperature)
        reason = out_of_bounds(data)
        if reason is None and data is not None:
            try:
                criteria = [Criterion.model_validate({**c, "name": str(c["name"]).strip()}) for c in data["criteria"]]
                rubric = Rubric(criteria=unique_names(criteria))
                stats.rubrics_written += 1
                return rubric
            except ValidationError:
                reason = "invalid_criterion"
        stats.count(f"rubric_{reason}")
        log.info("rubric attempt %d rejected (%s): %.200s", attempt + 1, reason, raw)
    stats.rubrics_failed += 1
    raise RubricError(f"no valid rubric after {retries + 1} attempts")
