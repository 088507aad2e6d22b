"""Grade a group: write the rubric when none is given, then rate every answer on every criterion."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pydantic import ValidationError

from services.judge import prompts
from services.judge.scoring import weighted_score
from shared.checks import grade_programmatic
from shared.clients.llm import ChatClient
from shared.schemas import AnswerGrade, Criterion, GradeRequest, GradeResponse, ModelEndpoint, Rubric, Verdict

log = logging.getLogger(__name__)
BACKEND = "llm+programmatic"


class RubricError(Exception):
    """The rubric writer gave no usable rubric within its retries."""


@dataclass
class JudgeStats:
    groups: int = 0
    rubric_retries: int = 0
    verdict_retries: int = 0
    ungradeable: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class EndpointRefused(Exception):
    """A teacher endpoint the request names cannot be called: not allowed here (403) or no key (422)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Grader:
    def __init__(
        self,
        llm: ChatClient,
        retries: int,
        retry_temperature: float = 0.7,
        spread: int = 4,
        allow_endpoints: bool = True,
    ) -> None:
        self.llm, self.retries, self.retry_temperature, self.spread = llm, retries, retry_temperature, spread
        self.allow_endpoints = allow_endpoints
        self.stats = JudgeStats()
        self._teachers: dict[str, ChatClient] = {}

    def client(self, endpoint: ModelEndpoint | None) -> ChatClient:
        """The judge's own model, or a cached client of the teacher the request names."""
        if endpoint is None:
            return self.llm
        if not self.allow_endpoints:
            raise EndpointRefused(f"this judge does not call request-supplied endpoints ({endpoint.base_url})", 403)
        key = endpoint.model_dump_json()
        if key not in self._teachers:
            try:
                self._teachers[key] = ChatClient.for_endpoint(endpoint, max_parallel=self.llm.max_parallel)
            except ValueError as exc:  # its API-key variable is unset in this judge's environment
                raise EndpointRefused(str(exc), 422) from exc
        return self._teachers[key]

    async def aclose(self) -> None:
        await asyncio.gather(self.llm.aclose(), *(c.aclose() for c in self._teachers.values()))

    def _temperature(self, attempt: int) -> float:
        """Greedy first, as the method grades; a retry samples, or it would repeat the same failure."""
        return 0.0 if attempt == 0 else self.retry_temperature

    async def grade(self, request: GradeRequest) -> GradeResponse:
        self.stats.groups += 1
        writer, scorer = self.client(request.rubric_writer), self.client(request.scorer)
        rubric = request.rubric or await self.write_rubric(request, writer)
        criteria = _merge(rubric.criteria, request.extra_criteria)
        grades = await asyncio.gather(
            *(self.grade_answer(request.task, criteria, a, scorer, request.judge_guidance) for a in request.answers)
        )
        return GradeResponse(rubric=Rubric(criteria=criteria), grades=list(grades), backend=BACKEND)

    async def write_rubric(self, request: GradeRequest, llm: ChatClient) -> Rubric:
        samples = prompts.answer_spread(request.answers, self.spread)
        messages = prompts.rubric_messages(
            request.document, request.task, request.reference, samples, request.rubric_guidance
        )
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.rubric_retries += 1
            data, raw = await llm.json_chat(
                messages, prompts.rubric_schema(), prompts.rubric_token_bound(), self._temperature(attempt)
            )
            try:
                rubric = Rubric.model_validate(data)
            except ValidationError as exc:
                log.info("rubric attempt %d unusable: %s | %.200s", attempt + 1, exc.error_count(), raw)
                continue
            if len(rubric.criteria) <= 5:
                return Rubric(criteria=_dedupe(rubric.criteria))
            log.info("rubric attempt %d has %d criteria (max 5)", attempt + 1, len(rubric.criteria))
        raise RubricError(f"no valid rubric after {self.retries + 1} attempts")

    async def grade_answer(
        self, task: str, criteria: list[Criterion], answer: str, llm: ChatClient, guidance: str = ""
    ) -> AnswerGrade:
        verdicts = [grade_programmatic(c, answer) for c in criteria if c.programmatic]
        judged = [c for c in criteria if not c.programmatic]
        if judged:
            llm_verdicts = await self._llm_verdicts(task, judged, answer, llm, guidance)
            if llm_verdicts is None:
                self.stats.ungradeable += 1
                return AnswerGrade(verdicts=verdicts, score=None, valid=False, error="ungradeable verdict")
            verdicts += llm_verdicts
        return AnswerGrade(verdicts=verdicts, score=weighted_score(criteria, verdicts))

    async def _llm_verdicts(
        self, task: str, criteria: list[Criterion], answer: str, llm: ChatClient, guidance: str
    ) -> list[Verdict] | None:
        messages = prompts.score_messages(task, criteria, answer, guidance)
        schema = prompts.verdict_schema(len(criteria))
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.verdict_retries += 1
            data, _ = await llm.json_chat(
                messages, schema, prompts.verdict_token_bound(len(criteria)), self._temperature(attempt)
            )
            verdicts = _read_verdicts(data, criteria)
            if verdicts is not None:
                return verdicts
        return None


def _read_verdicts(data: dict[str, object] | None, criteria: list[Criterion]) -> list[Verdict] | None:
    if data is None:
        return None
    verdicts = []
    for i, criterion in enumerate(criteria, start=1):
        item = data.get(f"criterion_{i}")
        if not isinstance(item, dict):
            return None
        try:
            verdicts.append(
                Verdict(criterion=criterion.name, rating=item.get("rating"), reason=str(item.get("reason", "")))
            )
        except ValidationError:
            return None
    return verdicts


def _dedupe(criteria: list[Criterion]) -> list[Criterion]:
    """Verdicts are keyed by name, so a repeated name gets a numeric suffix."""
    seen: dict[str, int] = {}
    out = []
    for c in criteria:
        seen[c.name] = seen.get(c.name, 0) + 1
        out.append(c if seen[c.name] == 1 else c.model_copy(update={"name": f"{c.name} ({seen[c.name]})"}))
    return out


def _merge(rubric: list[Criterion], extra: list[Criterion]) -> list[Criterion]:
    """Extra criteria follow the rubric's; a clashing name gets a suffix so verdicts stay keyed."""
    names = {c.name for c in rubric}
    merged = list(rubric)
    for c in extra:
        name = c.name if c.name not in names else f"{c.name} (extra)"
        names.add(name)
        merged.append(c.model_copy(update={"name": name}))
    return merged
