"""The built-in judge on a real LLM endpoint that answers badly: the vLLM server on the tiny model,
asked without json_schema enforcement, writes noise. Malformed verdicts are re-asked a bounded number
of times, then recorded as ungradeable (no score, never 0), and the judge keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.judge.app import create_app
from shared.schemas import Criterion, GradeResponse, MentionCheck, Rubric
from shared.settings import JudgeSettings

RETRIES = 2
RUBRIC = Rubric(
    criteria=[
        Criterion(name="resistance", description="Names insulin resistance.", gold="insulin resistance", weight=3),
        Criterion(name="insulin", weight=1, check=MentionCheck(terms=["insulin"])),
    ]
)
ANSWERS = ["Cells resist insulin.", "It is about sugar.", "Insulin resistance and a tired pancreas."]


@pytest.fixture
async def unstructured_judge(tiny_generator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = JudgeSettings(llm_base_url=f"{tiny_generator_url}/v1", structured_output=False, retries=RETRIES)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://j") as c:
        yield c


async def test_malformed_verdicts_are_retried_then_ungradeable(unstructured_judge: httpx.AsyncClient):
    body = {"document": "d", "task": "What goes wrong in type 2 diabetes?", "answers": ANSWERS}
    reply = await unstructured_judge.post("/v1/grade", json={**body, "rubric": RUBRIC.model_dump(mode="json")})
    assert reply.status_code == 200, reply.text
    grades = GradeResponse.model_validate(reply.json()).grades
    invalid = [g for g in grades if not g.valid]
    assert invalid, "the tiny model wrote a parseable verdict for every answer without a schema"
    for g in invalid:
        assert g.score is None and g.error == "ungradeable verdict"
        assert [v.criterion for v in g.verdicts] == ["insulin"]  # the exact part is still reported
    stats = (await unstructured_judge.get("/v1/stats")).json()
    assert stats["ungradeable"] == len(invalid)
    assert stats["verdict_retries"] >= RETRIES * len(invalid)
    assert stats["llm_calls"] >= (RETRIES + 1) * len(invalid)
    # /metrics holds exactly these numbers, and the judge is ready: its LLM endpoint answers.
    exposition = (await unstructured_judge.get("/metrics")).text
    assert f"pop_judge_invalid_answers_total {float(stats['ungradeable'])}" in exposition
    assert f"pop_judge_verdict_calls_total {float(stats['llm_calls'])}" in exposition
    assert f"pop_judge_verdict_retries_total {float(stats['verdict_retries'])}" in exposition
    ready = await unstructured_judge.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "checks": {"llm": "ok"}}

    # The judge keeps serving: a rubric it can grade exactly still gets exact scores.
    exact = Rubric(criteria=[RUBRIC.criteria[1]])
    again = await unstructured_judge.post("/v1/grade", json={**body, "rubric": exact.model_dump(mode="json")})
    assert [g["score"] for g in again.json()["grades"]] == [2.0, 0.0, 2.0]


async def test_a_rubric_that_cannot_be_written_is_a_502_with_retries_counted(unstructured_judge: httpx.AsyncClient):
    body = {"document": "Insulin resistance is ...", "task": "What is insulin resistance?", "answers": ANSWERS}
    reply = await unstructured_judge.post("/v1/grade", json=body)
    if reply.status_code == 200:  # the noise happened to parse as a rubric within bounds: then it must be one
        rubric = GradeResponse.model_validate(reply.json()).rubric
        assert 1 <= len(rubric.criteria) <= 5 and all(c.gold.strip() for c in rubric.criteria)
        return
    assert reply.status_code == 502 and reply.headers["content-type"].startswith("application/problem+json")
    stats = (await unstructured_judge.get("/v1/stats")).json()
    assert stats["rubric_retries"] == RETRIES
    assert sum(n for reason, n in stats["by_reason"].items() if reason.startswith("rubric_")) == RETRIES + 1
    assert stats["rubrics_failed"] == 1 and stats["rubrics_written"] == 0
    assert 'pop_judge_rubrics_total{outcome="failed"} 1.0' in (await unstructured_judge.get("/metrics")).text
