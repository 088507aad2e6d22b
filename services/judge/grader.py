"""Grade a group: write the rubric when none is given, then rate every answer on every criterion.

Programmatic criteria are graded exactly; the rest by the LLM scorer, all at once or one criterion
per call. Identical answers in a group are graded once.
"""

from __future__ import annotations

import asyncio
import logging

from services.judge import scoring
from services.judge.rubric_writer import RubricError, write_rubric
from services.judge.stats import JudgeStats
from services.judge.verdicts import LLMScorer
from shared.checks import grade_programmatic
from shared.clients.llm import ChatClient
from shared.hosts import HostAllowlist
from shared.schemas import AnswerGrade, Criterion, GradeRequest, GradeResponse, ModelEndpoint, Rubric, Verdict

log = logging.getLogger(__name__)
__all__ = ["EndpointRefused", "Grader", "RubricError"]


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
        allowed_hosts: HostAllowlist | None = None,
    ) -> None:
        self.llm, self.retries, self.retry_temperature, self.spread = llm, retries, retry_temperature, spread
        self.allow_endpoints = allow_endpoints
        self.allowed_hosts = allowed_hosts or HostAllowlist([], "POP_JUDGE_ALLOWED_HOSTS")
        self.stats = JudgeStats()
        self._teachers: dict[str, ChatClient] = {}

    def client(self, endpoint: ModelEndpoint | None) -> ChatClient:
        """The judge's own model, or a cached client of the teacher the request names."""
        if endpoint is None:
            return self.llm
        if not self.allow_endpoints:
            raise EndpointRefused(f"this judge does not call request-supplied endpoints ({endpoint.base_url})", 403)
        if (why := self.allowed_hosts.refusal(endpoint.base_url)) is not None:
            raise EndpointRefused(f"teacher endpoint {endpoint.base_url}: {why}", 403)
        key = endpoint.model_dump_json()
        if key not in self._teachers:
            try:
                self._teachers[key] = ChatClient.for_endpoint(endpoint, max_parallel=self.llm.max_parallel)
            except ValueError as exc:  # its API-key variable is unset in this judge's environment
                raise EndpointRefused(str(exc), 422) from exc
        return self._teachers[key]

    async def aclose(self) -> None:
        await asyncio.gather(self.llm.aclose(), *(c.aclose() for c in self._teachers.values()))

    async def grade(self, request: GradeRequest) -> GradeResponse:
        self.stats.groups += 1
        writer, scorer_llm = self.client(request.rubric_writer), self.client(request.scorer)
        written = request.rubric or await write_rubric(
            writer, request, self.retries, self.retry_temperature, self.stats, self.spread
        )
        rubric = Rubric(format=written.format, criteria=merge(written, request.extra_criteria))
        scorer = LLMScorer(scorer_llm, self.retries, self.retry_temperature, self.stats)
        unique = list(dict.fromkeys(request.answers))
        judged = sum(1 for c in rubric.criteria if not c.programmatic)
        self.stats.deduplicated += (len(request.answers) - len(unique)) * judged
        graded = await asyncio.gather(*(self.grade_answer(request, rubric, a, scorer) for a in unique))
        by_answer = dict(zip(unique, graded, strict=True))
        backends = ["programmatic"] if judged < len(rubric.criteria) else []
        if judged:
            backends.insert(0, f"llm:{scorer_llm.model}")
        return GradeResponse(rubric=rubric, grades=[by_answer[a] for a in request.answers], backend="+".join(backends))

    async def grade_answer(self, request: GradeRequest, rubric: Rubric, answer: str, scorer: LLMScorer) -> AnswerGrade:
        verdicts = [grade_programmatic(c, answer) for c in rubric.criteria if c.programmatic]
        judged = [c for c in rubric.criteria if not c.programmatic]
        if judged:
            llm_verdicts = await self._llm_verdicts(request, rubric, judged, answer, scorer)
            if llm_verdicts is None:
                self.stats.ungradeable += 1
                return AnswerGrade(verdicts=verdicts, score=None, valid=False, error="ungradeable verdict")
            verdicts += llm_verdicts
        by_name = {v.criterion: v for v in verdicts}
        ordered = [by_name[c.name] for c in rubric.criteria]
        return AnswerGrade(verdicts=ordered, score=scoring.score(rubric.format, rubric.criteria, ordered))

    async def _llm_verdicts(
        self, request: GradeRequest, rubric: Rubric, judged: list[Criterion], answer: str, scorer: LLMScorer
    ) -> list[Verdict] | None:
        guidance, fmt = request.judge_guidance, rubric.format
        if request.grading == "all_at_once":
            return await scorer.rate(request.task, judged, answer, guidance, fmt)
        each = await asyncio.gather(*(scorer.rate(request.task, [c], answer, guidance, fmt) for c in judged))
        if any(v is None for v in each):
            return None
        return [v for verdicts in each for v in verdicts or []]


def merge(rubric: Rubric, extra: list[Criterion]) -> list[Criterion]:
    """Extra criteria follow the rubric's; a clashing name gets a suffix so verdicts stay keyed.

    In a healthbench rubric an extra criterion without points is worth its weight in points.
    """
    names = {c.name for c in rubric.criteria}
    merged = list(rubric.criteria)
    for c in extra:
        name = c.name if c.name not in names else f"{c.name} (extra)"
        names.add(name)
        update: dict[str, object] = {"name": name}
        if rubric.format == "healthbench" and c.points is None:
            update["points"] = c.weight
        elif rubric.format == "pop":
            update["points"] = None
        merged.append(c.model_copy(update=update))
    return merged
