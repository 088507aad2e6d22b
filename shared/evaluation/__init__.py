"""Held-out evaluation: answer fixed tasks with the served policy, grade them with a judge, and
report the mean reward with a bootstrap interval over tasks.

The tasks are answered exactly as self-play answers (each task type's solver brief, no document),
so a change in held-out reward measures the policy, not a change of prompt. Intervals resample
tasks, not answers: answers to one task are correlated, tasks are the independent units.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, ValidationError

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
    by_task_type: dict[str, float]
    by_criterion: dict[str, float] = Field(default_factory=dict)
    """Share of graded answers rated 2 (fully met) on each criterion."""


def load_eval_tasks(path: str | Path = HELDOUT_QA) -> list[EvalTask]:
    """A JSONL eval set; a malformed line is an error naming the file and line."""
    tasks = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            tasks.append(EvalTask.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ValueError(f"{path}:{number}: not an eval task: {exc}") from exc
    if not tasks:
        raise ValueError(f"{path}: no eval tasks")
    return tasks


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
    per_task: dict[str, float] = {}
    by_type: dict[str, list[float]] = {}
    invalid = 0
    for task, task_scores in zip(tasks, scores, strict=True):
        valid = [s for s in task_scores if s is not None]
        invalid += len(task_scores) - len(valid)
        if valid:
            per_task[task.id] = sum(valid) / len(valid)
            by_type.setdefault(task.task_type, []).append(per_task[task.id])
    if not per_task:
        raise ValueError("no eval answer could be graded")
    return EvalReport(
        version=version,
        run_id=run_id,
        answers=sum(len(s) for s in scores),
        invalid=invalid,
        reward=bootstrap(list(per_task.values()), seed=seed),
        per_task=per_task,
        by_task_type={k: sum(v) / len(v) for k, v in by_type.items()},
        by_criterion={k: sum(v) / len(v) for k, v in met.items()},
    )
