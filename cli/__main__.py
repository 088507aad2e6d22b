"""``pop``: run the self-play demo, bring the local stack up, drive runs through the gateway."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from redis.asyncio import Redis
from rich.console import Console

from cli.evals import eval_command
from cli.runs import checkpoints, print_run, rollback, run_app, swap
from cli.stack import LocalStack, StackOptions
from shared.api import RunRead
from shared.clients.gateway import GatewayClient
from shared.config import RunConfig
from shared.modeling import ModelError, resolve_model
from shared.streams import EpisodeStream
from shared.synthesis import SynthesisRead

app = typer.Typer(help="Rubric-based self-play RL post-training (POP), as services.", no_args_is_help=True)
app.add_typer(run_app, name="run")
app.command("checkpoints")(checkpoints)
app.command("swap")(swap)
app.command("rollback")(rollback)
app.command("eval")(eval_command)
console = Console()
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _print_synthesis(synthesis: SynthesisRead) -> None:
    made = ", ".join(f"{t} {n}" for t, n in sorted(synthesis.groups_by_task_type.items())) or "none"
    rejected = ", ".join(f"{r} {n}" for r, n in sorted(synthesis.filtered.items(), key=lambda kv: -kv[1])) or "none"
    console.print(f"synthesis: {synthesis.draws} documents drawn; groups: {made}; rejected: {rejected}")


async def _watch(
    gateway_url: str, config: RunConfig, stack: LocalStack, timeout_s: float
) -> tuple[RunRead, SynthesisRead]:
    gateway = GatewayClient(gateway_url, timeout_s=30.0)
    try:
        run = await gateway.create_run(config)
        console.print(f"launched run [bold]{run.id}[/] ({config.trainer.max_steps} steps)")
        seen, deadline = 0, time.monotonic() + timeout_s
        while not run.status.terminal:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run.id} did not finish within {timeout_s:.0f}s")
            dead = [name for name, ok in stack.alive().items() if not ok]
            if dead:
                raise RuntimeError(f"services exited: {dead}; logs in {stack.logs}")
            await asyncio.sleep(2.0)
            run = await gateway.get_run(run.id)
            for s in run.steps[seen:]:
                score = "-" if s.mean_score is None else f"{s.mean_score:.3f}"
                console.print(f"step {s.step}: policy v{s.policy_version}, mean score {score}")
            seen = len(run.steps)
        return run, await gateway.synthesis(run.id)
    finally:
        await gateway.aclose()


def resolve_or_exit(model: str, revision: str | None, what: str) -> None:
    """Resolve the model here first, in the foreground: a download shows its progress, and a name that does
    not resolve fails with its reason before any service starts (the services then find it cached)."""
    try:
        resolve_model(model, revision)
    except ModelError as exc:
        console.print(f"{what}: {exc}", style="red", markup=False)
        raise typer.Exit(2) from exc


@app.command()
def demo(
    config: Annotated[Path, typer.Option(help="Run config YAML.")] = DEFAULT_CONFIG,
    home: Annotated[Path, typer.Option(help="State, logs and checkpoints.")] = Path(".pop"),
    timeout: Annotated[float, typer.Option(help="Seconds the run may take.")] = 3600.0,
) -> None:
    """Start the stack, run a few self-play steps, print the score per step and the checkpoints."""
    run_config = RunConfig.from_file(config)
    resolve_or_exit(run_config.model, run_config.model_revision, f"{config}: model")
    options = StackOptions(home=home, model=run_config.model, model_revision=run_config.model_revision)
    with console.status("starting Redis, generator (vLLM), gateway, judge, producer, trainer..."):
        stack = LocalStack(options).start()
    try:
        console.print(f"stack up: gateway {stack.gateway_url}, generator {stack.generator_url}, logs {stack.logs}")
        run, synthesis = asyncio.run(_watch(stack.gateway_url, run_config, stack, timeout))
    finally:
        stack.stop()
    print_run(run)
    _print_synthesis(synthesis)
    console.print(f"checkpoints: {run.checkpoint_dir}")
    if run.status.value != "completed":
        raise typer.Exit(1)


@app.command()
def up(
    model: Annotated[
        str,
        typer.Option(
            help="Policy served by the generator, and the runs' default: a Hub id (org/name; HF_HOME, "
            "HF_HUB_OFFLINE and HF_TOKEN apply), a model folder or a pop/ alias."
        ),
    ] = "pop/smollm2-135m-instruct",
    model_revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit of a Hub model (default: main).")
    ] = None,
    home: Annotated[Path, typer.Option()] = Path(".pop"),
    token: Annotated[
        str | None, typer.Option(envvar="POP_GATEWAY_TOKEN", help="Require this bearer token for changes.")
    ] = None,
    eval_generator: Annotated[
        bool, typer.Option(help="Also start a generator for POST /v1/evals to score checkpoints on.")
    ] = False,
    generators: Annotated[
        int,
        typer.Option(
            min=1, help="Replicas of the training generator: requests are spread over them, every swap reaches all."
        ),
    ] = 1,
) -> None:
    """Run the local stack until Ctrl-C; launch runs with POST /v1/runs (or pop run start) on the gateway."""
    options = StackOptions(
        home=home,
        model=model,
        model_revision=model_revision,
        api_token=token,
        eval_generator=eval_generator,
        generators=generators,
    )
    resolve_or_exit(model, model_revision, "--model")
    stack = LocalStack(options).start()
    for url, admin in zip(stack.generator_urls, stack.generator_admin_urls, strict=True):
        console.print(f"generator {url} (admin {admin})")
    console.print(f"gateway {stack.gateway_url} · judge {stack.judge_url}")
    if stack.eval_generator_url:
        console.print(
            f"eval generator {stack.eval_generator_url} (admin {stack.eval_generator_admin_url})"
            f" · eval sets in {stack.home / 'evals'}"
        )
    console.print(f"dashboard {stack.gateway_url}/dashboard/ · API docs {stack.gateway_url}/docs")
    try:
        while all(stack.alive().values()):
            time.sleep(1.0)
        console.print(f"a service exited: {stack.alive()}; logs in {stack.logs}")
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


async def export_episodes(redis_url: str, run_id: str, out: Path) -> int:
    redis = Redis.from_url(redis_url)
    count = 0
    try:
        with out.open("w", encoding="utf-8") as fh:
            async for group in EpisodeStream(redis, run_id).export():
                fh.write(group.model_dump_json() + "\n")
                count += 1
    finally:
        await redis.aclose()
    return count


@app.command()
def episodes(
    run_id: Annotated[str, typer.Argument(help="The run whose scored groups to export.")],
    out: Annotated[Path, typer.Option(help="JSONL file to write, one episode group a line.")],
    redis_url: Annotated[str, typer.Option(envvar="REDIS_URL")] = "redis://127.0.0.1:6379/0",
) -> None:
    """Save a run's scored groups, e.g. for the offline DPO pass (python -m services.trainer offline)."""
    count = asyncio.run(export_episodes(redis_url, run_id, out))
    console.print(f"{count} groups written to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
