"""``pop run ...``, ``pop checkpoints``, ``pop swap``: drive runs through the gateway's REST API, like
any other client (the gateway's address from ``--gateway`` or ``POP_GATEWAY_URL``; a bearer token, when the
gateway requires one, from ``POP_GATEWAY_TOKEN``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.api import RunRead, RunStatus, SwapCommand, SwapResult
from shared.clients.gateway import GatewayClient
from shared.clients.http import ServiceError
from shared.config import RunConfig

T = TypeVar("T")
console = Console()
run_app = typer.Typer(help="Start, inspect, watch and stop runs.", no_args_is_help=True)
Gateway = Annotated[str, typer.Option("--gateway", envvar="POP_GATEWAY_URL", help="The gateway's base URL.")]
DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def call(gateway_url: str, action: Callable[[GatewayClient], Awaitable[T]]) -> T:
    """One gateway call; a problem body becomes a one-line error and exit code 1, not a traceback."""

    async def go() -> T:
        client = GatewayClient(gateway_url, timeout_s=300.0, token=os.environ.get("POP_GATEWAY_TOKEN") or None)
        try:
            return await action(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except ServiceError as exc:
        console.print(f"[red]{exc.status} {exc.problem.get('title', '')}[/]: {exc.problem.get('detail', exc)}")
        raise typer.Exit(1) from exc


def print_run(run: RunRead) -> None:
    table = Table(
        title=f"run {run.id} ({run.name}): {run.status.value}, step {run.step}/{run.config.trainer.max_steps}"
    )
    for column in ("step", "policy version", "mean score", "loss", "groups", "seconds"):
        table.add_column(column, justify="right")
    for s in run.steps:
        table.add_row(
            str(s.step), str(s.policy_version), "-" if s.mean_score is None else f"{s.mean_score:.3f}",
            f"{s.metrics.get('loss', float('nan')):.4f}", str(int(s.metrics.get("groups", 0))),
            f"{s.metrics.get('step_seconds', 0.0):.1f}",
        )  # fmt: skip
    console.print(table)
    if run.error:
        console.print(f"[red]error:[/] {run.error}")


@run_app.command("start")
def start(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Run config YAML.")],
    gateway: Gateway = DEFAULT_GATEWAY,
) -> None:
    """Launch a run from a config file; prints its id."""
    try:
        run_config = RunConfig.from_file(config)
    except ValueError as exc:
        console.print(f"[red]{config}: invalid run config[/]\n{exc}")
        raise typer.Exit(2) from exc
    run = call(gateway, lambda c: c.create_run(run_config))
    console.print(f"run [bold]{run.id}[/] ({run.name}): {run.status.value}")
    print(run.id)


@run_app.command("list")
def list_runs(
    status: Annotated[RunStatus | None, typer.Option(help="Only runs in this state.")] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
) -> None:
    """The newest runs."""
    runs = call(gateway, lambda c: c.list_runs(status))
    table = Table(title=f"{runs.total} runs")
    for column in ("id", "name", "status", "step", "policy version", "recent score"):
        table.add_column(column)
    for r in runs.items:
        score = "-" if r.recent_mean_score is None else f"{r.recent_mean_score:.3f}"
        table.add_row(r.id, r.name, r.status.value, str(r.step), str(r.policy_version), score)
    console.print(table)


@run_app.command("status")
def status(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """A run's state and its steps."""
    print_run(call(gateway, lambda c: c.get_run(run_id)))


@run_app.command("watch")
def watch(
    run_id: str,
    gateway: Gateway = DEFAULT_GATEWAY,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600.0,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Follow a run until it ends, with a progress bar of its steps; exit code 1 unless it completed."""
    run = call(gateway, lambda c: c.get_run(run_id))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"run {run.id}", total=run.config.trainer.max_steps, completed=run.step)
        while not run.status.terminal and time.monotonic() < deadline:
            time.sleep(interval)
            run = call(gateway, lambda c: c.get_run(run_id))
            score = "-" if run.recent_mean_score is None else f"{run.recent_mean_score:.3f}"
            progress.update(bar, completed=run.step, description=f"run {run.id} · {run.status.value} · score {score}")
    print_run(run)
    if run.status is not RunStatus.completed:
        raise typer.Exit(1)


@run_app.command("stop")
def stop(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """Stop a run for good (its checkpoints stay)."""
    run = call(gateway, lambda c: c.stop_run(run_id))
    console.print(f"run {run.id}: {run.status.value} at step {run.step}")


@run_app.command("pause")
def pause(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """Pause a run: producers stop, its trainer checkpoints the update in hand and lets go."""
    run = call(gateway, lambda c: c.pause_run(run_id))
    console.print(f"run {run.id}: {run.status.value} at step {run.step}")


@run_app.command("resume")
def resume(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """Resume a paused run from its newest checkpoint."""
    run = call(gateway, lambda c: c.resume_run(run_id))
    console.print(f"run {run.id}: {run.status.value} at step {run.step}")


@run_app.command("delete")
def delete(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """Forget a run that is not training: its records, episodes and synthesis counts."""
    call(gateway, lambda c: c.delete_run(run_id))
    console.print(f"run {run_id}: deleted")


def checkpoints(run_id: str, gateway: Gateway = DEFAULT_GATEWAY) -> None:
    """A run's checkpoints, newest last."""
    found = call(gateway, lambda c: c.checkpoints(run_id))
    table = Table(title=f"run {run_id}: {len(found)} checkpoints")
    for column in ("version", "step", "mode", "path", "created"):
        table.add_column(column)
    for c in found:
        table.add_row(str(c.version), str(c.step), c.manifest.mode.value, c.path, f"{c.created_at:%Y-%m-%d %H:%M:%S}")
    console.print(table)


def swap(
    version: Annotated[int, typer.Argument(min=0, help="Policy version to serve; 0 is the run's base model.")],
    run: Annotated[str, typer.Option("--run", help="The run whose checkpoint to serve.")],
    gateway: Gateway = DEFAULT_GATEWAY,
) -> None:
    """Hot-swap the generator to a run's checkpoint (promote or roll back) without a restart."""
    report_swap(call(gateway, lambda c: c.swap(SwapCommand(run_id=run, version=version))))


def rollback(
    run: Annotated[str, typer.Argument(help="A paused or ended run.")],
    version: Annotated[int | None, typer.Option(min=0, help="Default: the one before the version served.")] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
) -> None:
    """Serve an earlier checkpoint of a run that is not training."""
    report_swap(call(gateway, lambda c: c.rollback(run, version)))


def report_swap(result: SwapResult) -> None:
    console.print(f"generator serves v{result.served.version} of run {result.served.run_id} ({result.seconds:.2f}s)")
