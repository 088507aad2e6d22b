"""``pop eval``: score OpenAI-compatible endpoints (directly) or a run's checkpoints (through the
gateway's ``POST /v1/evals``) on an eval set, side by side, with bootstrap intervals; with two
targets, also the paired gain of the second over the first."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.runs import call
from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.config import RunConfig
from shared.evaluation import EvalReport, Interval, paired_gain
from shared.evaluation.api import (
    CheckpointTarget,
    EndpointTarget,
    EvalCreate,
    EvalFormat,
    EvalRead,
    EvalSampling,
    EvalSet,
    EvalStatus,
)
from shared.evaluation.sets import EvalItems, load_set, score
from shared.schemas import Rubric

console = Console()
POLL_S = 3.0
FORMATS = tuple(EvalFormat)


def parse_set(spec: str) -> tuple[EvalFormat, Path | None]:
    """``FORMAT`` (the bundled sample) or ``FORMAT:PATH``."""
    kind, _, path = spec.partition(":")
    if kind not in FORMATS:
        raise typer.BadParameter(f"{spec!r}: the format must be one of {', '.join(FORMATS)} (then :PATH, optional)")
    return EvalFormat(kind), Path(path) if path else None


def parse_endpoint(spec: str) -> tuple[str, str]:
    """``LABEL=URL``: the label names the endpoint's column."""
    label, sep, url = spec.partition("=")
    if not sep or not label or not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{spec!r}: write LABEL=URL, e.g. base=http://127.0.0.1:8000/v1")
    return label, url


@dataclass(frozen=True)
class Endpoints:
    model: str
    api_key: str


async def _one(
    url: str, kind: EvalFormat, items: EvalItems, who: Endpoints, how: EvalSampling, judge_url: str | None,
    rubric: Rubric | None,
) -> EvalReport:  # fmt: skip
    llm = ChatClient(url, who.model, api_key=who.api_key, max_parallel=4)
    judge = JudgeClient(judge_url, timeout_s=600) if judge_url else None
    try:
        return await score(kind, items, llm, judge, rubric, how)
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
            group, *(_cell(r.by_task_type[group]) if group in r.by_task_type else "-" for r in reports.values())
        )
    console.print(table)
    if len(reports) == 2:
        (first, before), (second, after) = reports.items()
        console.print(f"paired gain, {second} over {first}: {_cell(paired_gain(before, after))}")


def parse_checkpoint(spec: str) -> CheckpointTarget:
    """``LABEL=RUN_ID:VERSION``."""
    label, _, where = spec.rpartition("=")
    run_id, _, version = where.partition(":")
    if not run_id or not version.isdigit():
        raise typer.BadParameter(f"{spec!r}: write LABEL=RUN_ID:VERSION, e.g. trained=3f2a...:8 (version 0: the base)")
    return CheckpointTarget(label=label or None, run_id=run_id, version=int(version))


def through_gateway(gateway: str, request: EvalCreate) -> EvalRead:
    """Queue the eval on the gateway (it swaps checkpoints onto its eval generator) and wait for it."""
    done = call(gateway, lambda c: c.create_eval(request))
    eval_id = done.id
    with console.status(f"eval {done.id}: {len(request.targets)} targets on {request.set.format}..."):
        while done.status in (EvalStatus.pending, EvalStatus.running):
            time.sleep(POLL_S)
            done = call(gateway, lambda c: c.get_eval(eval_id))
    if done.status is EvalStatus.failed:
        console.print(f"[red]eval {done.id} failed[/]: {done.error}")
        raise typer.Exit(1)
    return done


def eval_command(
    eval_set: Annotated[str, typer.Argument(help="ifeval, healthbench or heldout (bundled samples), or FORMAT:PATH.")],
    endpoint: Annotated[
        list[str] | None, typer.Option(help="LABEL=URL of an OpenAI-compatible API; repeat to compare.")
    ] = None,
    checkpoint: Annotated[
        list[str] | None, typer.Option(help="LABEL=RUN_ID:VERSION of a run's checkpoint (needs --gateway); repeat.")
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(help="Evaluate through this gateway (POST /v1/evals); PATH is then in its eval folder."),
    ] = None,
    model: Annotated[str, typer.Option(help="The model name each endpoint serves.")] = "policy",
    api_key_env: Annotated[str | None, typer.Option(help="Variable holding the endpoints' API key.")] = None,
    judge: Annotated[
        str | None, typer.Option(help="Judge URL (healthbench and heldout); with --gateway, a registered judge's name.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="heldout: the run config whose judge criteria grade.")] = None,
    n: Annotated[int, typer.Option(min=1, help="Answers a prompt.")] = 1,
    max_tokens: Annotated[int, typer.Option(min=1)] = 512,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first this many items of the set.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the reports here as JSON.")] = None,
) -> None:
    """Score endpoints or checkpoints on an eval set, side by side."""
    kind, path = parse_set(eval_set)
    endpoints = dict(parse_endpoint(e) for e in endpoint or [])
    checkpoints = [parse_checkpoint(c) for c in checkpoint or []]
    if not endpoints and not checkpoints:
        raise typer.BadParameter("give at least one --endpoint or --checkpoint")
    rubric = Rubric(criteria=RunConfig.from_file(config).judge.extra_criteria) if config else None
    how = EvalSampling(n=n, max_tokens=max_tokens, temperature=temperature, seed=seed)
    if gateway is not None:
        targets = [EndpointTarget(label=k, base_url=v, model=model) for k, v in endpoints.items()]
        request = EvalCreate(
            set=EvalSet(format=kind, path=str(path) if path else None, limit=limit),
            targets=[*targets, *checkpoints],
            judge=judge,
            criteria=rubric.criteria if rubric else None,
            sampling=how,
        )
        done = through_gateway(gateway, request)
        finish(done.reports, kind, output)
        return
    if checkpoints:
        raise typer.BadParameter("checkpoints are served for evals by a gateway's eval generator: give --gateway URL")
    if kind is not EvalFormat.ifeval and judge is None:
        raise typer.BadParameter(f"{kind} is graded by a judge: give --judge URL")
    if kind is EvalFormat.heldout and rubric is None:
        raise typer.BadParameter("heldout is graded with a run config's judge criteria: give --config PATH")
    try:
        items = load_set(kind, path, limit)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    who = Endpoints(model, os.environ.get(api_key_env, "") if api_key_env else "EMPTY")
    reports = {label: asyncio.run(_one(url, kind, items, who, how, judge, rubric)) for label, url in endpoints.items()}
    finish(reports, kind, output)


def finish(reports: dict[str, EvalReport], kind: str, output: Path | None) -> None:
    show(reports, kind)
    if output is not None:
        output.write_text(json.dumps({k: r.model_dump(mode="json") for k, r in reports.items()}, indent=2))
