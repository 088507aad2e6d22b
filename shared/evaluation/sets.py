"""Evaluating a policy on the public benchmark formats: IFEval (graded exactly, no model) and
HealthBench (graded by the judge against each example's rubric). Both return the same EvalReport as
held-out self-play tasks, so reports pair and compare the same way.

Intervals resample examples: the answers to one prompt are correlated, prompts are the units.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean
from typing import cast

from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.evaluation import EvalReport, EvalTask, bootstrap, evaluate, graded_report, load_eval_tasks
from shared.evaluation.api import EvalFormat, EvalSampling
from shared.evaluation.healthbench import HEALTHBENCH_SAMPLE, HealthBenchItem, load_healthbench
from shared.evaluation.ifeval import IFEVAL_SAMPLE, IFEvalItem, load_ifeval
from shared.schemas import ChatMessage, GradeRequest, Rubric
from shared.tasktypes import TaskTypeError, load_task_types


async def evaluate_ifeval(
    llm: ChatClient,
    items: Sequence[IFEvalItem],
    *,
    n: int = 1,
    max_tokens: int = 512,
    temperature: float = 0.0,
    seed: int = 0,
    version: int = 0,
    run_id: str | None = None,
) -> EvalReport:
    """IFEval's strict prompt-level accuracy (an answer counts when it follows every instruction); by
    instruction group (``by_task_type``: ``keywords``, ``length_constraints``, ...: the share of the
    group's instructions followed, over the prompts that have any) and by instruction (``by_criterion``:
    the share of answers that followed it)."""

    async def one(index: int, item: IFEvalItem) -> list[list[bool]]:
        messages = [ChatMessage(role="user", content=item.prompt)]
        sampled = await llm.sample(messages, n, max_tokens, temperature, with_tokens=False, seed=seed + index)
        return [item.followed(c.text) for c in sampled.completions]

    results = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    per_task: dict[str, float] = {}
    followed: defaultdict[str, list[bool]] = defaultdict(list)
    by_group: defaultdict[str, list[float]] = defaultdict(list)
    for item, answers in zip(items, results, strict=True):
        per_task[str(item.key)] = fmean(float(all(a)) for a in answers)
        in_prompt: defaultdict[str, list[float]] = defaultdict(list)
        for answer in answers:
            for name, ok in zip(item.instruction_id_list, answer, strict=True):
                followed[name].append(ok)
                in_prompt[name.split(":", 1)[0]].append(float(ok))
        for group, oks in in_prompt.items():  # one value a prompt: prompts are the resampled units
            by_group[group].append(fmean(oks))
    return EvalReport(
        version=version,
        run_id=run_id,
        answers=sum(len(a) for a in results),
        invalid=0,
        reward=bootstrap(list(per_task.values()), seed=seed),
        per_task=per_task,
        by_task_type={group: bootstrap(v, seed=seed) for group, v in sorted(by_group.items())},
        by_criterion={name: fmean(map(float, v)) for name, v in sorted(followed.items())},
    )


def conversation_text(messages: Sequence[ChatMessage]) -> str:
    """The conversation as the judge reads it: the answer it grades is the next assistant turn."""
    return "\n\n".join(f"{m.role}: {m.content}" for m in messages)


async def evaluate_healthbench(
    llm: ChatClient,
    judge: JudgeClient,
    items: Sequence[HealthBenchItem],
    *,
    n: int = 1,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    seed: int = 0,
    version: int = 0,
    run_id: str | None = None,
) -> EvalReport:
    """Each example's mean HealthBench score over ``n`` answers; ``reward`` is the mean over examples
    with its interval (HealthBench clips its headline mean to [0, 1]: ``healthbench_overall``), and
    ``by_task_type`` the mean by theme. Answers the judge could not grade count as ``invalid``."""

    async def one(index: int, item: HealthBenchItem) -> list[float | None]:
        sampled = await llm.sample(item.prompt, n, max_tokens, temperature, with_tokens=False, seed=seed + index)
        graded = await judge.grade(
            GradeRequest(
                document="",
                task=conversation_text(item.prompt),
                answers=[c.text for c in sampled.completions],
                rubric=item.rubric(),
            )
        )
        return [g.score if g.valid else None for g in graded.grades]

    scores = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    try:
        return graded_report(
            [(item.prompt_id, item.theme, item_scores) for item, item_scores in zip(items, scores, strict=True)],
            seed=seed,
            version=version,
            run_id=run_id,
        )
    except ValueError as exc:
        raise ValueError(f"HealthBench: {exc}") from exc


EvalItems = list[IFEvalItem] | list[HealthBenchItem] | list[EvalTask]


def load_set(kind: EvalFormat, path: Path | None, limit: int | None = None) -> EvalItems:
    """The set's items (the bundled sample when ``path`` is None), the first ``limit`` of them if given.
    Held-out tasks must name task types that load: a typo is an error here, not mid-eval."""
    items: EvalItems
    if kind is EvalFormat.ifeval:
        items = load_ifeval(path or IFEVAL_SAMPLE)
    elif kind is EvalFormat.healthbench:
        items = load_healthbench(path or HEALTHBENCH_SAMPLE)
    else:
        items = load_eval_tasks(path) if path else load_eval_tasks()
        try:
            load_task_types(sorted({t.task_type for t in items}))
        except TaskTypeError as exc:
            raise ValueError(f"{path or 'the bundled held-out set'}: {exc}") from exc
    return items[:limit] if limit else items


async def score(
    kind: EvalFormat,
    items: EvalItems,
    llm: ChatClient,
    judge: JudgeClient | None,
    rubric: Rubric | None,
    sampling: EvalSampling,
    *,
    version: int = 0,
    run_id: str | None = None,
) -> EvalReport:
    """One endpoint's report on a loaded set; ``judge`` grades healthbench and heldout, ``rubric`` heldout."""
    how = sampling.model_dump()
    if kind is EvalFormat.ifeval:
        return await evaluate_ifeval(llm, cast(list[IFEvalItem], items), **how, version=version, run_id=run_id)
    if judge is None:
        raise ValueError(f"{kind} is graded by a judge, and none was given")
    if kind is EvalFormat.healthbench:
        hb = cast(list[HealthBenchItem], items)
        return await evaluate_healthbench(llm, judge, hb, **how, version=version, run_id=run_id)
    if rubric is None:
        raise ValueError("heldout is graded on fixed criteria, and none were given")
    tasks = cast(list[EvalTask], items)
    types = load_task_types(sorted({t.task_type for t in tasks}))
    return await evaluate(llm, judge, tasks, types, rubric, **how, version=version, run_id=run_id)
