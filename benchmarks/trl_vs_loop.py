"""This system's full loop against TRL's GRPOTrainer, side by side, in one process run.

Both train SmolLM2-135M-Instruct with GRPO (Dr. GRPO loss, lr 5e-5, K=16, 2 prompts a step, 8 steps,
40-token answers) on the same programmatic reward (configs/learning-check.yaml: a connective, 5-24
words; scored 0-2). The loop proposes its own tasks from the corpus, samples them with vLLM, grades
them with the judge, trains and hot-swaps; TRL then trains a fresh copy on exactly the prompts the
loop trained on, generating with transformers. Reported: wall time, the ratio, both reward curves.

    python -m benchmarks.trl_vs_loop
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from cli.stack import LocalStack, StackOptions
from shared.checks import grade_programmatic
from shared.config import RunConfig
from shared.modeling import resolve_model
from shared.schemas import Criterion, EpisodeGroup
from shared.streams import stream_key

CONFIG = Path(__file__).parents[1] / "configs" / "learning-check.yaml"


def score(criteria: list[Criterion], answer: str) -> float:
    """The judge's pop score, from the same programmatic checks: sum of weight x rating over weights."""
    ratings = [(c.weight, grade_programmatic(c, answer).rating) for c in criteria]
    return sum(w * r for w, r in ratings) / sum(w for w, _ in ratings)


async def appended_groups(redis_url: str, run_id: str) -> list[EpisodeGroup]:
    redis = Redis.from_url(redis_url)
    try:
        entries: Any = await redis.xrange(stream_key(run_id))
    finally:
        await redis.aclose()
    return [EpisodeGroup.model_validate_json(fields[b"group"]) for _, fields in entries]


async def raw_sampling(generator_url: str, prompts: list[list[dict[str, str]]], config: RunConfig) -> float:
    """Seconds the generator alone takes to sample K answers for each prompt, two prompts at a time
    (the producer's concurrency): the floor the loop's episode rate is compared with."""
    body = {"model": "policy", "n": config.selfplay.group_size, "temperature": config.selfplay.temperature,
            "max_tokens": config.selfplay.max_answer_tokens}  # fmt: skip
    gate = asyncio.Semaphore(config.selfplay.concurrency)
    async with httpx.AsyncClient(base_url=generator_url, timeout=600) as client:

        async def one(messages: list[dict[str, str]]) -> None:
            async with gate:
                (await client.post("/v1/chat/completions", json={**body, "messages": messages})).raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(m) for m in prompts))
    return time.perf_counter() - started


def run_loop(config: RunConfig, home: Path) -> tuple[float, list[float], list[list[dict[str, str]]], float]:
    """(seconds from launch to completion, mean reward per step, the prompts trained on, pipeline
    efficiency: the loop's episodes/s over the generator's own on the same prompts)."""
    with LocalStack(StackOptions(home=home, redis_url=os.environ.get("REDIS_URL"))) as stack:
        started = time.perf_counter()
        created = httpx.post(f"{stack.gateway_url}/v1/runs", json=config.model_dump(mode="json"), timeout=30)
        run_id = created.raise_for_status().json()["id"]
        while (run := httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json())["status"] in (
            "pending",
            "running",
        ):
            time.sleep(1.0)
        seconds = time.perf_counter() - started
        assert run["status"] == "completed", run.get("error")
        groups = asyncio.run(appended_groups(stack.redis_url, run_id))
        prompts = [[m.model_dump() for m in g.episodes[0].prompt_messages] for g in groups]
        raw_seconds = asyncio.run(raw_sampling(stack.generator_url, prompts, config))
    episodes = sum(len(g.episodes) for g in groups)
    efficiency = (episodes / seconds) / (episodes / raw_seconds)
    trained = prompts[: config.trainer.max_steps * config.trainer.groups_per_step]
    return seconds, [s["mean_score"] for s in run["steps"]], trained, efficiency


def run_trl(config: RunConfig, prompts: list[list[dict[str, str]]], out: Path) -> tuple[float, list[float]]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    criteria = config.judge.extra_criteria

    def reward(completions: list[Any], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return [score(criteria, t) for t in texts]

    k, per_step = config.selfplay.group_size, config.trainer.groups_per_step
    args = GRPOConfig(
        output_dir=str(out), use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
        max_steps=config.trainer.max_steps, learning_rate=config.trainer.learning_rate,
        num_generations=k, per_device_train_batch_size=k * per_step, gradient_accumulation_steps=1,
        max_completion_length=config.selfplay.max_answer_tokens, temperature=config.selfplay.temperature,
        loss_type="dr_grpo", beta=0.0, epsilon=0.2, shuffle_dataset=False, seed=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=resolve_model(config.model),
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    curve = [float(log["reward"]) for log in trainer.state.log_history if "reward" in log]
    return seconds, curve


def table(loop: tuple[float, list[float]], trl: tuple[float, list[float]], efficiency: float) -> str:
    def row(name: str, seconds: float, curve: list[float]) -> str:
        shown = ", ".join(f"{r:.2f}" for r in curve)
        return f"| {name} | {seconds:.0f} | {statistics.fmean(curve[-2:]):.3f} | {shown} |"

    return "\n".join([
        "| trainer | wall time (s) | reward, last 2 steps (0-2) | reward per step |",
        "|---|---|---|---|",
        row("this system (vLLM + judge + Redis + trainer + hot-swap)", *loop),
        row("TRL GRPOTrainer (transformers generation)", *trl),
        "",
        f"Wall-time ratio, this system / TRL: {loop[0] / trl[0]:.2f} (target: at most 0.5).",
        f"Pipeline efficiency, the loop's episodes/s over the generator's alone on the same prompts: "
        f"{efficiency:.2f} (target: at least 0.8).",
    ])  # fmt: skip


def measure() -> str:
    config = RunConfig.from_file(CONFIG)
    with tempfile.TemporaryDirectory() as home:
        loop_seconds, loop_curve, prompts, efficiency = run_loop(config, Path(home) / "stack")
        trl = run_trl(config, prompts, Path(home) / "trl")
    return table((loop_seconds, loop_curve), trl, efficiency)


def main() -> None:
    print(measure())


if __name__ == "__main__":
    main()
