"""A minimal third-party judge, written from docs/judge-api.md alone: no model, word overlap.

It exists to prove the contract is implementable by someone else and that a run can be graded by
it: ``python -m tests.judge_conformance.minimal_judge --port 8200``. Programmatic criteria are
graded exactly (the contract requires it); every other criterion is rated by how many of its gold
fact's words (or, for HealthBench items, its description's words) the answer contains.
"""

from __future__ import annotations

import argparse
import re

import uvicorn
from fastapi import FastAPI

from shared.checks import grade_programmatic
from shared.problems import ProblemError, install_problem_handlers
from shared.schemas import (
    SCHEMA_VERSION,
    AnswerGrade,
    Criterion,
    GradeRequest,
    GradeResponse,
    Rubric,
    Verdict,
    WordCountCheck,
)

BACKEND = "minimal-overlap"


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 3}


def _rate(criterion: Criterion, answer: str) -> Verdict:
    if criterion.check is not None:
        return grade_programmatic(criterion, answer).model_copy(update={"backend": BACKEND})
    wanted = _words(criterion.gold or criterion.description)
    share = len(wanted & _words(answer)) / len(wanted) if wanted else 0.0
    rating = 2 if share >= 0.5 else 1 if share > 0 else 0
    met = rating == 2 if criterion.points is not None else None
    return Verdict(
        criterion=criterion.name, rating=rating, met=met, reason=f"{share:.0%} of the words", backend=BACKEND
    )


def _score(rubric: Rubric, verdicts: list[Verdict]) -> float:
    by = {v.criterion: v for v in verdicts}
    if rubric.format == "healthbench":
        positive = sum(c.points or 0 for c in rubric.criteria if (c.points or 0) > 0)
        return sum(c.points or 0 for c in rubric.criteria if by[c.name].met) / positive
    return sum(c.weight * by[c.name].rating for c in rubric.criteria) / sum(c.weight for c in rubric.criteria)


def create_app(schema_version: str = SCHEMA_VERSION) -> FastAPI:
    app = FastAPI(title="minimal judge")
    install_problem_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "schema_version": schema_version}

    @app.post("/v1/grade")
    async def grade(body: GradeRequest) -> GradeResponse:
        if body.schema_version != schema_version:
            raise ProblemError(422, "Unsupported schema version", f"this judge speaks {schema_version}")
        rubric = body.rubric or Rubric(
            criteria=[
                Criterion(name="covers the reference", description="States the reference's facts.",
                          gold=body.reference or body.task, weight=3),
                Criterion(name="concise", weight=1, check=WordCountCheck(min_words=1, max_words=13)),
            ]
        )  # fmt: skip
        names = {c.name for c in rubric.criteria}
        extra = [
            c.model_copy(update={"name": f"{c.name} (extra)"}) if c.name in names else c for c in body.extra_criteria
        ]
        if rubric.format == "healthbench":
            extra = [c if c.points is not None else c.model_copy(update={"points": c.weight}) for c in extra]
        rubric = Rubric(format=rubric.format, criteria=[*rubric.criteria, *extra])
        grades = []
        for answer in body.answers:
            verdicts = [_rate(c, answer) for c in rubric.criteria]
            grades.append(AnswerGrade(verdicts=verdicts, score=_score(rubric, verdicts)))
        return GradeResponse(rubric=rubric, grades=grades, backend=BACKEND)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--schema-version", default=SCHEMA_VERSION)
    args = parser.parse_args()
    uvicorn.run(create_app(args.schema_version), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
