"""``pop eval``: score one or more OpenAI-compatible endpoints on an eval set, side by side, with
bootstrap intervals; with two endpoints, also the paired gain of the second over the first."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.config import RunConfig
from shared.evaluation import EvalReport, Interval, evaluate, load_eval_tasks, paired_gain
from shared.evaluation.healthbench import HEALTHBENCH_SAMPLE, load_healthbench
from shared.evaluation.ifeval import IFEVAL_SAMPLE, load_ifeval
from shared.evaluation.sets import evaluate_healthbench, evaluate_ifeval
from shared.schemas import Rubric
from shared.tasktypes import load_task_types

console = Console()
FORMATS = ("ifeval", "healthbench", "heldout")


def parse_set(spec: str) -> tuple[str, Path | None]:
    """``FORMAT`` (the bundled sample) or ``FORMAT:PATH``."""
    kind, _, path = spec.partition(":")
    if kind not in FORMATS:
        raise typer.BadParameter(f"{spec!r}: the format must be one of {', '.join(FORMATS)} (then :PATH, optional)")
    return kind, Path(path) if path else None


def parse_endpoint(spec: str) -> tuple[str, str]:
    """``LABEL=URL``: the label names the endpoint's column."""
    label, sep, url = spec.partition("=")
    if not sep or not label or not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{spec!r}: write LABEL=URL, e.g. base=http://127.0.0.1:8000/v1")
    return label, url


@dataclass(frozen=True)
class Sampling:
    model: str
    api_key: str
    n: int
    max_tokens: int
    temperature: float
    seed: int


async def _one(
    url: str, kind: str, path: Path | None, how: Sampling, judge_url: str | None, rubric: Rubric | None
) -> EvalReport:
    llm = ChatClient(url, how.model, api_key=how.api_key, max_parallel=4)
    judge = JudgeClient(judge_url, timeout_s=600) if judge_url else None
    try:
        if kind == "ifeval":
            return await evaluate_ifeval(
                llm, load_ifeval(path or IFEVAL_SAMPLE),
                n=how.n, max_tokens=how.max_tokens, temperature=how.temperature, seed=how.seed,
            )  # fmt: skip
        if judge is None:
            raise typer.BadParameter(f"{kind} is graded by a judge: give --judge URL")
        if kind == "healthbench":
            return await evaluate_healthbench(
                llm, judge, load_healthbench(path or HEALTHBENCH_SAMPLE),
                n=how.n, max_tokens=how.max_tokens, temperature=how.temperature, seed=how.seed,
            )  # fmt: skip
        if rubric is None:
            raise typer.BadParameter("heldout is graded with a run config's judge criteria: give --config PATH")
        tasks = load_eval_tasks(path) if path else load_eval_tasks()
        types = load_task_types(sorted({t.task_type for t in tasks}))
        return await evaluate(
            llm, judge, tasks, types, rubric,
            n=how.n, max_tokens=how.max_tokens, temperature=how.temperature, seed=how.seed,
        )  # fmt: skip
    finally:
        await llm.aclose()
        if judge is not None:
            await judge.aclose()


def _cell(interval: Interval) -> str:
    return f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def show(reports: dict[str, EvalReport], kind: str) -> None:
    table = Table(title=f"{kind}: mean score, 95% interval over prompts")
    table.add_column("")
    for label in reports:
        table.add_column(label)
    table.add_row("overall", *(_cell(r.reward) for r in reports.values()))
    for group in sorted({g for r in reports.values() for g in r.by_task_type}):
        table.add_row(
            group, *(f"{r.by_task_type[group]:.3f}" if group in r.by_task_type else "-" for r in reports.values())
        )
    console.print(table)
    if len(reports) == 2:
        (first, before), (second, after) = reports.items()
        console.print(f"paired gain, {second} over {first}: {_cell(paired_gain(before, after))}")


def eval_command(
    eval_set: Annotated[str, typer.Argument(help="ifeval, healthbench or heldout (bundled samples), or FORMAT:PATH.")],
    endpoint: Annotated[list[str], typer.Option(help="LABEL=URL of an OpenAI-compatible API; repeat to compare.")],
    model: Annotated[str, typer.Option(help="The model name each endpoint serves.")] = "policy",
    api_key_env: Annotated[str | None, typer.Option(help="Variable holding the endpoints' API key.")] = None,
    judge: Annotated[str | None, typer.Option(help="Judge URL (healthbench and heldout).")] = None,
    config: Annotated[Path | None, typer.Option(help="heldout: the run config whose judge criteria grade.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Answers a prompt.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    output: Annotated[Path | None, typer.Option(help="Write the reports here as JSON.")] = None,
) -> None:
    """Score endpoints on an eval set, side by side."""
    kind, path = parse_set(eval_set)
    endpoints = dict(parse_endpoint(e) for e in endpoint)
    rubric = Rubric(criteria=RunConfig.from_file(config).judge.extra_criteria) if config else None
    key = os.environ.get(api_key_env, "") if api_key_env else "EMPTY"
    how = Sampling(model, key, n, max_tokens, temperature, seed)
    reports = {label: asyncio.run(_one(url, kind, path, how, judge, rubric)) for label, url in endpoints.items()}
    show(reports, kind)
    if output is not None:
        output.write_text(json.dumps({k: r.model_dump(mode="json") for k, r in reports.items()}, indent=2))
