"""The judge API contract (docs/judge-api.md), checked against any judge URL.

``pytest tests/judge_conformance --judge-url http://my-judge:8100`` grades a third-party judge; with
no URL the suite grades the built-in judge (on a real vLLM server) and a minimal external one.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.schemas import SCHEMA_VERSION, Criterion, GradeResponse, MentionCheck, Rubric, WordCountCheck

DOCUMENT = (
    "Type 2 diabetes is a chronic metabolic disorder in which the body's cells respond poorly to insulin, "
    "a state called insulin resistance, while the pancreas gradually fails to produce enough insulin."
)
TASK = "What goes wrong with insulin in type 2 diabetes?"
REFERENCE = "Cells respond poorly to insulin (insulin resistance) and the pancreas cannot make enough to compensate."

POP_SAMPLE = Rubric(
    criteria=[
        Criterion(name="short", weight=2, check=WordCountCheck(max_words=12)),
        Criterion(name="names insulin", weight=3, check=MentionCheck(terms=["insulin"])),
        Criterion(name="no hedging", weight=1, check=MentionCheck(type="must_not_mention", terms=["maybe"])),
    ]
)
POP_ANSWERS = {
    "Insulin lets cells absorb glucose.": 2.0,
    "Maybe it is insulin, but sugar control involves many hormones and organs working together over time.": 1.0,
    "It is about sugar.": 1.0,
    "Maybe sugar.": 4 / 6,
}
HEALTHBENCH_SAMPLE = Rubric(
    format="healthbench",
    criteria=[
        Criterion(name="rubric_item_1", description="Advises seeing a doctor", points=5,
                  check=MentionCheck(terms=["doctor"])),
        Criterion(name="rubric_item_2", description="Mentions insulin", points=3,
                  check=MentionCheck(terms=["insulin"])),
        Criterion(name="rubric_item_3", description="Recommends antibiotics", points=-4,
                  check=MentionCheck(terms=["antibiotics"])),
    ],
)  # fmt: skip
HEALTHBENCH_ANSWERS = {
    "See a doctor; insulin may be needed.": 1.0,
    "Take antibiotics and see a doctor.": 0.125,
    "Antibiotics.": -0.5,
    "Insulin helps.": 0.375,
}


def grade(judge_url: str, **body: Any) -> httpx.Response:
    request = {"document": DOCUMENT, "task": TASK, "reference": REFERENCE, **body}
    return httpx.post(f"{judge_url}/v1/grade", json=request, timeout=600)


def graded(judge_url: str, **body: Any) -> GradeResponse:
    reply = grade(judge_url, **body)
    assert reply.status_code == 200, reply.text
    return GradeResponse.model_validate(reply.json())


def assert_consistent(response: GradeResponse, answers: list[str]) -> None:
    """One grade per answer, in order; a valid grade has a verdict for every criterion and the score
    its format's rule gives; an invalid one has no score. Programmatic criteria are graded exactly."""
    from services.judge.scoring import score
    from shared.checks import grade_programmatic

    assert response.schema_version == SCHEMA_VERSION and response.backend
    assert len(response.grades) == len(answers)
    criteria = response.rubric.criteria
    for answer, g in zip(answers, response.grades, strict=True):
        if not g.valid:
            assert g.score is None and g.error
            continue
        assert [v.criterion for v in g.verdicts] == [c.name for c in criteria]
        assert g.score == pytest.approx(score(response.rubric.format, criteria, g.verdicts))
        for c, v in zip(criteria, g.verdicts, strict=True):
            if c.programmatic:
                assert v.rating == grade_programmatic(c, answer).rating, (c.name, answer)
            if response.rubric.format == "healthbench":
                assert v.met is not None and v.rating == (2 if v.met else 0)


def test_health_reports_the_schema_version(judge_url: str):
    health = httpx.get(f"{judge_url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["schema_version"] == SCHEMA_VERSION


def test_the_pop_sample_rubric_grades_with_the_exact_scores(judge_url: str):
    answers = list(POP_ANSWERS)
    response = graded(judge_url, answers=answers, rubric=POP_SAMPLE.model_dump(mode="json"))
    assert [c.name for c in response.rubric.criteria] == [c.name for c in POP_SAMPLE.criteria]
    assert [g.score for g in response.grades] == pytest.approx(list(POP_ANSWERS.values()))
    assert_consistent(response, answers)


def test_the_healthbench_sample_rubric_grades_with_the_exact_scores(judge_url: str):
    answers = list(HEALTHBENCH_ANSWERS)
    response = graded(judge_url, answers=answers, rubric=HEALTHBENCH_SAMPLE.model_dump(mode="json"))
    assert response.rubric.format == "healthbench"
    assert [g.score for g in response.grades] == pytest.approx(list(HEALTHBENCH_ANSWERS.values()))
    assert [v.met for v in response.grades[1].verdicts] == [True, False, True]
    assert_consistent(response, answers)


@pytest.mark.parametrize("grading", ["all_at_once", "per_criterion"])
def test_a_given_rubric_with_model_judged_criteria(judge_url: str, grading: str):
    rubric = Rubric(
        criteria=[
            Criterion(name="resistance", description="Names insulin resistance.", gold="insulin resistance",
                      weight=3),
            Criterion(name="pancreas", description="Says the pancreas fails.", gold="the pancreas fails", weight=2),
            Criterion(name="brief", weight=1, check=WordCountCheck(max_words=20)),
        ]
    )  # fmt: skip
    answers = [REFERENCE, "It is about sugar.", REFERENCE]  # identical answers get identical grades
    response = graded(judge_url, answers=answers, rubric=rubric.model_dump(mode="json"), grading=grading)
    assert [c.name for c in response.rubric.criteria] == ["resistance", "pancreas", "brief"]
    assert_consistent(response, answers)
    assert response.grades[0] == response.grades[2]


def test_without_a_rubric_the_judge_writes_one(judge_url: str):
    answers = [REFERENCE, "It is about sugar.", "Insulin resistance.", "No idea."]
    response = graded(judge_url, answers=answers)
    assert response.rubric.format == "pop" and 1 <= len(response.rubric.criteria) <= 5
    for c in response.rubric.criteria:
        assert c.programmatic or c.gold.strip()
    assert_consistent(response, answers)


def test_extra_criteria_are_appended_and_graded_exactly(judge_url: str):
    extra = Criterion(name="mentions glucose", weight=2, check=MentionCheck(terms=["glucose"]))
    answers = ["Insulin moves glucose into cells.", "It is about sugar."]
    response = graded(
        judge_url, answers=answers, rubric=POP_SAMPLE.model_dump(mode="json"), extra_criteria=[extra.model_dump()]
    )
    assert [c.name for c in response.rubric.criteria][-1] == "mentions glucose"
    assert [g.verdicts[-1].rating for g in response.grades] == [2, 0]
    assert_consistent(response, answers)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"answers": []}, "answers"),
        ({"answers": ["a"], "task": ""}, "task"),
        ({"answers": ["a"], "schema_version": "999"}, "schema"),
        ({"answers": ["a"], "rubric": {"format": "healthbench", "criteria": [{"name": "x"}]}}, "points"),
    ],
)
def test_bad_requests_get_a_problem_body_naming_what_is_wrong(judge_url: str, body: dict[str, Any], field: str):
    reply = grade(judge_url, **body)
    assert reply.status_code == 422
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert field in reply.text
