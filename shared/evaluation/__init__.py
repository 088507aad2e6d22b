"""Held-out evaluation: answer fixed tasks with the served policy, grade them with a judge, and
report the mean reward with a bootstrap interval over tasks.

The tasks are answered exactly as self-play answers (each task type's solver brief, no document),
so a change in held-out reward measures the policy, not a change of prompt. Intervals resample
tasks, not answers: answers to one task are correlated, tasks are the independent units.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.schemas import GradeRequest, Rubric, Schema
from shared.tasktypes import TaskType

HELDOUT_QA = Path(__file__).parent / "heldout_qa.jsonl"


class EvalTask(Schema):
    """One held-out task: answered by the policy, never trained on."""

    id: str = Field(min_length=1)
    task_type: str = "long_form_qa"
    prompt: str = Field(min_length=1)


class Interval(Schema):
    mean: float
    low: float
    high: float


class EvalReport(Schema):
    """Mean reward over held-out tasks, with each task's own mean so two reports can be paired."""

    version: int
    run_id: str | None = None
    answers: int
    invalid: int
    reward: Interval
    per_task: dict[str, float]
    by_task_type: dict[str, Interval]
    """Mean by task type (IFEval: instruction group; HealthBench: theme), with its interval over that
    group's prompts."""
    by_criterion: dict[str, float] = Field(default_factory=dict)
    """Share of graded answers rated 2 (fully met) on each criterion."""


M = TypeVar("M", bound=BaseModel)


def read_jsonl(path: str | Path, model: type[M], what: str) -> list[M]:
    """An eval set, one ``model`` a line (``what``: "an eval task"); a malformed line is an error
    naming the file and line, and a file without a single item is one too."""
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{path}:{number}: not {what}: {exc}") from exc
    if not items:
        raise ValueError(f"{path}: no {what.split(' ', 1)[-1]}s")
    return items


def load_eval_tasks(path: str | Path = HELDOUT_QA) -> list[EvalTask]:
    return read_jsonl(path, EvalTask, "an eval task")


def graded_report(
    graded: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    seed: int,
    version: int,
    run_id: str | None,
    by_criterion: dict[str, float] | None = None,
) -> EvalReport:
    """The report of (task id, task group, each answer's score or None if ungradable) triples: each
    task's mean over its graded answers, the interval over tasks, the mean by group."""
    per_task: dict[str, float] = {}
    by_group: dict[str, list[float]] = {}
    invalid = 0
    for task_id, group, scores in graded:
        valid = [s for s in scores if s is not None]
        invalid += len(scores) - len(valid)
        if valid:
            per_task[task_id] = sum(valid) / len(valid)
            by_group.setdefault(group, []).append(per_task[task_id])
    if not per_task:
        raise ValueError("no eval answer could be graded")
    return EvalReport(
        version=version,
        run_id=run_id,
        answers=sum(len(scores) for _, _, scores in graded),
        invalid=invalid,
        reward=bootstrap(list(per_task.values()), seed=seed),
        per_task=per_task,
        by_task_type={k: bootstrap(v, seed=seed) for k, v in sorted(by_group.items())},
        by_criterion=by_criterion or {},
    )


def bootstrap(values: Sequence[float], resamples: int = 4000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of the mean."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap of no values")
    means = np.random.default_rng(seed).choice(data, size=(resamples, data.size)).mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean=float(data.mean()), low=float(low), high=float(high))


def paired_gain(before: EvalReport, after: EvalReport, level: float = 0.95, seed: int = 0) -> Interval:
    """Bootstrap interval of the mean per-task change from ``before`` to ``after`` (same tasks)."""
    shared_ids = sorted(before.per_task.keys() & after.per_task.keys())
    if not shared_ids:
        raise ValueError("the two reports share no task")
    return bootstrap([after.per_task[i] - before.per_task[i] for i in shared_ids], level=level, seed=seed)


async def evaluate(
    llm: ChatClient,
    judge: JudgeClient,
    tasks: Sequence[EvalTask],
    task_types: dict[str, TaskType],
    rubric: Rubric,
    *,
    n: int,
    max_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    version: int = 0,
    run_id: str | None = None,
) -> EvalReport:
    """Sample ``n`` answers a task (seeded per task, so one set of weights gives one draw) and grade them."""
    unknown = sorted({t.task_type for t in tasks} - task_types.keys())
    if unknown:
        raise ValueError(f"eval tasks name task types that were not loaded: {unknown}")

    met: dict[str, list[bool]] = {}

    async def one(index: int, task: EvalTask) -> list[float | None]:
        messages = task_types[task.task_type].solve_messages(task.prompt)
        sampled = await llm.sample(messages, n, max_tokens, temperature, with_tokens=False, seed=seed + index)
        answers = [c.text for c in sampled.completions]
        graded = await judge.grade(GradeRequest(document="", task=task.prompt, answers=answers, rubric=rubric))
        for verdict in (v for g in graded.grades if g.valid for v in g.verdicts):
            met.setdefault(verdict.criterion, []).append(verdict.rating == 2)
        return [g.score if g.valid else None for g in graded.grades]

    scores = await asyncio.gather(*(one(i, t) for i, t in enumerate(tasks)))
    return graded_report(
        [(task.id, task.task_type, task_scores) for task, task_scores in zip(tasks, scores, strict=True)],
        seed=seed,
        version=version,
        run_id=run_id,
        by_criterion={k: sum(v) / len(v) for k, v in met.items()},
    )
