"""This system's full loop against TRL's GRPOTrainer, side by side, in one process run.

Both train SmolLM2-135M-Instruct with GRPO (Dr. GRPO loss, lr 5e-5, K=16, 2 prompts a step, 8 steps,
40-token answers) on the same programmatic reward (configs/learning-check.yaml: a connective, 5-24
words; scored 0-2). The loop proposes its own tasks from the corpus, samples them with vLLM, grades
them with the judge, trains and hot-swaps; TRL then trains a fresh copy on exactly the prompts the
loop trained on, generating with transformers. Reported: wall time, the ratio, both reward curves,
and where the loop's time went, from the services' own metrics.

    python -m benchmarks.trl_vs_loop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from benchmarks.metrics import histogram_sums, scrape, total
from cli.stack import LocalStack, StackOptions
from shared.checks import grade_programmatic
from shared.config import GRPOConfig as GRPOLoss
from shared.config import RunConfig
from shared.files import sha256_file
from shared.modeling import resolve_model
from shared.schemas import Criterion, EpisodeGroup
from shared.streams import stream_key

CONFIG = Path(__file__).parents[1] / "configs" / "learning-check.yaml"
COSTS = Path(__file__).parent / "cpu-costs.json"
TRAINER_PHASES = {
    "wait": "trainer waits for fresh groups (proposing, sampling, judging)",
    "update": "update (generation held)",
    "checkpoint": "checkpoint: write, acknowledge, report",
    "swap": "hot-swap, as the trainer waits on it",
}


@dataclass
class LoopResult:
    seconds: float
    curve: list[float]
    prompts: list[list[dict[str, str]]]
    efficiency: float
    """The loop's episodes/s over the generator's own on the same prompts."""
    trainer_phases: dict[str, float] = field(default_factory=dict)
    swap_phases: dict[str, float] = field(default_factory=dict)
    generated_tokens: float = 0.0
    """Every token vLLM generated in the run: proposals and answers."""
    answer_tokens: int = 0
    raw_tokens_per_second: float = 0.0
    synthesis: dict[str, Any] = field(default_factory=dict)
    """The producer's draws, groups and rejections by reason (the gateway's synthesis view)."""
    costs: dict[str, Any] = field(default_factory=dict)
    """Per-component costs for the scaling model (benchmarks/scaling.py)."""


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


async def raw_sampling(generator_url: str, prompts: list[list[dict[str, str]]], config: RunConfig) -> tuple[float, int]:
    """(seconds, completion tokens) for the generator alone to sample K answers for each prompt, as
    many prompts at a time as the producer runs: the floor the loop's episode rate is compared with."""
    body = {"model": "policy", "n": config.selfplay.group_size, "temperature": config.selfplay.temperature,
            "max_tokens": config.selfplay.max_answer_tokens}  # fmt: skip
    gate = asyncio.Semaphore(config.selfplay.concurrency)
    async with httpx.AsyncClient(base_url=generator_url, timeout=600) as client:

        async def one(messages: list[dict[str, str]]) -> int:
            async with gate:
                reply = await client.post("/v1/chat/completions", json={**body, "messages": messages})
                return int(reply.raise_for_status().json()["usage"]["completion_tokens"])

        started = time.perf_counter()
        tokens = await asyncio.gather(*(one(m) for m in prompts))
    return time.perf_counter() - started, sum(tokens)


def run_loop(config: RunConfig, home: Path) -> LoopResult:
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
        trainer = histogram_sums(
            scrape(f"http://127.0.0.1:{stack.ports['trainer']}"), "pop_trainer_phase_seconds", "phase"
        )
        generator = scrape(stack.generator_url)
        synthesis = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/synthesis", timeout=10).json()
        kept = list(stack.checkpoint_dir.glob(f"{run_id}/v*"))
        weight_bytes = sum(f.stat().st_size for d in kept for f in d.glob("*.safetensors")) // len(kept)
        checkpoint_bytes = sum(f.stat().st_size for d in kept for f in d.iterdir()) // len(kept)
        weights = kept[-1] / "model.safetensors"
        groups = asyncio.run(appended_groups(stack.redis_url, run_id))
        prompts = [[m.model_dump() for m in g.episodes[0].prompt_messages] for g in groups]
        raw_seconds, raw_tokens = asyncio.run(raw_sampling(stack.generator_url, prompts, config))
    episodes = sum(len(g.episodes) for g in groups)
    swaps = histogram_sums(generator, "pop_generator_swap_phase_seconds", "phase")
    result = LoopResult(
        seconds=seconds,
        curve=[s["mean_score"] for s in run["steps"]],
        prompts=prompts[: config.trainer.max_steps * config.trainer.groups_per_step],
        efficiency=(episodes / seconds) / (episodes / raw_seconds),
        trainer_phases={phase: spent for phase, (spent, _) in trainer.items()},
        swap_phases={phase: spent for phase, (spent, _) in swaps.items()},
        generated_tokens=total(generator, "vllm:generation_tokens_total"),
        answer_tokens=sum(len(e.completion.token_ids) for g in groups for e in g.episodes),
        raw_tokens_per_second=raw_tokens / raw_seconds,
        synthesis={k: synthesis.get(k) for k in ("draws", "groups", "filtered")},
    )
    result.costs = component_costs(result, groups, trainer, swaps, (weight_bytes, checkpoint_bytes), weights, config)
    return result


def component_costs(
    loop: LoopResult,
    groups: list[EpisodeGroup],
    trainer: dict[str, tuple[float, float]],
    swaps: dict[str, tuple[float, float]],
    sizes: tuple[int, int],
    weights: Path,
    config: RunConfig,
) -> dict[str, Any]:
    """What the scaling model needs, measured in this run: the workload and each component's rate;
    ``sizes``: (the served weights' bytes, a whole checkpoint's: weights, optimizer state, tokenizer)."""
    weight_bytes, checkpoint_bytes = sizes
    trained = groups[: config.trainer.max_steps * config.trainer.groups_per_step]
    answers = [e for g in trained for e in g.episodes]
    steps = config.trainer.max_steps
    swap_count = max(1.0, swaps.get("reload", (0.0, 1.0))[1])
    load = sum(swaps.get(p, (0.0, 0.0))[0] for p in ("verify", "checksum", "reload", "finish")) / swap_count
    started = time.perf_counter()
    sha256_file(weights)
    hashing = time.perf_counter() - started
    answer_tokens = sum(len(e.completion.token_ids) for e in answers)
    return {
        "workload": {
            "groups": config.trainer.groups_per_step,
            "k": config.selfplay.group_size,
            "prompt_tokens": statistics.fmean(len(e.prompt_token_ids) for e in answers),
            "answer_tokens": statistics.fmean(len(e.completion.token_ids) for e in answers),
            # every generated token that is not a trained answer, per trained group
            "proposal_tokens": (loop.generated_tokens - answer_tokens) / len(trained),
            "judge_tokens": 0.0,
        },
        "costs": {
            "decode_tokens_s": loop.raw_tokens_per_second,
            "train_tokens_s": sum(len(e.prompt_token_ids) + len(e.completion.token_ids) for e in answers)
            / trainer["update"][0],
            "weight_bytes": weight_bytes,
            "checkpoint_bytes": checkpoint_bytes,
            "write_bytes_s": checkpoint_bytes * steps / trainer["checkpoint"][0],
            "hash_bytes_s": weight_bytes / hashing,
            "load_bytes_s": weight_bytes / load,
            "drain_s": swaps.get("drain", (0.0, 1.0))[0] / swap_count,
        },
        "measured_step_s": loop.seconds / steps,
    }


TRL_SHOWN = (
    "use_cpu", "bf16", "gradient_checkpointing", "loss_type", "beta", "epsilon", "num_generations",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_completion_length", "temperature",
    "learning_rate", "lr_scheduler_type", "max_steps",
)  # fmt: skip
"""The GRPOConfig fields printed beside TRL's figure: what it computed, as the loop's trainer did."""


def loop_precision(config: RunConfig) -> str:
    """What the loop's trainer computes in on this machine (``trainer.precision: auto`` resolved)."""
    import torch

    from services.trainer.compute import resolve_precision

    return resolve_precision(config.trainer, torch.device("cuda" if torch.cuda.is_available() else "cpu"))


def run_trl(
    config: RunConfig, prompts: list[list[dict[str, str]]], out: Path
) -> tuple[float, list[float], dict[str, Any]]:
    """TRL's GRPOTrainer on the loop's prompts, with the loop trainer's numerics: the same loss, clipping,
    learning rate and schedule, precision (bf16 mixed or fp32) and gradient checkpointing."""
    import torch
    from datasets import Dataset
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    criteria = config.judge.extra_criteria

    def reward(completions: list[Any], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return [score(criteria, t) for t in texts]

    k, per_step = config.selfplay.group_size, config.trainer.groups_per_step
    algo = config.trainer.algorithm
    assert isinstance(algo, GRPOLoss), "the comparison is GRPO against GRPO"
    args = GRPOConfig(
        output_dir=str(out), use_cpu=not torch.cuda.is_available(), report_to="none", save_strategy="no",
        logging_steps=1, max_steps=config.trainer.max_steps, learning_rate=config.trainer.learning_rate,
        num_generations=k, per_device_train_batch_size=k * per_step, gradient_accumulation_steps=1,
        max_completion_length=config.selfplay.max_answer_tokens, temperature=config.selfplay.temperature,
        loss_type=algo.loss_type, beta=algo.kl_beta, epsilon=algo.clip_eps, shuffle_dataset=False, seed=0,
        lr_scheduler_type="constant",  # as this system's trainer
        bf16=loop_precision(config) == "bf16", gradient_checkpointing=config.trainer.gradient_checkpointing,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=resolve_model(config.model, config.model_revision),
        reward_funcs=reward,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    curve = [float(log["reward"]) for log in trainer.state.log_history if "reward" in log]
    return seconds, curve, {name: getattr(args, name) for name in TRL_SHOWN}


def table(loop: LoopResult, trl: tuple[float, list[float], dict[str, Any]], config: RunConfig) -> str:
    def row(name: str, seconds: float, curve: list[float]) -> str:
        shown = ", ".join(f"{r:.2f}" for r in curve)
        return f"| {name} | {seconds:.0f} | {statistics.fmean(curve[-2:]):.3f} | {shown} |"

    phases = loop.trainer_phases
    traced = sum(phases.values())
    swap = ", ".join(f"{p} {s:.1f} s" for p, s in sorted(loop.swap_phases.items(), key=lambda kv: -kv[1]))
    synth = loop.synthesis
    rejected = ", ".join(f"{r} {n}" for r, n in sorted((synth.get("filtered") or {}).items(), key=lambda kv: -kv[1]))
    mixed = (synth.get("filtered") or {}).get("mixed_policy_version", 0)
    # fmt: off
    return "\n".join([
        "| trainer | wall time (s) | reward, last 2 steps (0-2) | reward per step |",
        "|---|---|---|---|",
        row("this system (vLLM + judge + Redis + trainer + hot-swap)", loop.seconds, loop.curve),
        row("TRL GRPOTrainer (transformers generation)", trl[0], trl[1]),
        "",
        f"The loop's trainer: {config.trainer.algorithm.name} ({getattr(config.trainer.algorithm, 'loss_type', '')}), "
        f"precision {loop_precision(config)}, gradient checkpointing {config.trainer.gradient_checkpointing}, "
        f"lr {config.trainer.learning_rate:g} constant, micro-batches of {config.trainer.micro_batch_size} "
        "sequences (the same gradient as one pass), logits at completion positions only.",
        "TRL's configuration: " + ", ".join(f"{k}={v}" for k, v in trl[2].items()) + " (TRL also computes "
        "logits at completion positions only).",
        "The work differs, and the wall times include it: the loop proposes its own tasks from the corpus "
        "(rejected proposals included), samples K answers with vLLM, grades them with the judge service, "
        "queues them through Redis, trains, writes a served version each step and hot-swaps the generator; "
        "TRL trains on exactly the prompts the loop trained on, generating with transformers in its own "
        "process and scoring with the same programmatic criteria, with no tasks to write, no services and "
        "no checkpoints.",
        "",
        f"Wall-time ratio, this system / TRL: {loop.seconds / trl[0]:.2f} (target: at most 0.5).",
        f"Pipeline efficiency, the loop's episodes/s over the generator's alone on the same prompts: "
        f"{loop.efficiency:.2f} (target: at least 0.8).",
        "",
        "Where the loop's time went (the trainer's `pop_trainer_phase_seconds`; the rest is start-up "
        "before the first step):",
        "",
        "| phase | seconds | share of the loop's wall time |",
        "|---|---|---|",
        *(f"| {TRAINER_PHASES[p]} | {phases.get(p, 0.0):.0f} | {phases.get(p, 0.0) / loop.seconds:.0%} |"
          for p in TRAINER_PHASES),
        f"| other (start-up, first swap to v0) | {loop.seconds - traced:.0f} | {1 - traced / loop.seconds:.0%} |",
        "",
        f"The producer drew {synth.get('draws')} documents for {synth.get('groups')} groups; rejections: "
        f"{rejected or 'none'}. Each rejected proposal was generated and thrown away. Groups dropped as "
        f"`mixed_policy_version` (sampled across a swap): {mixed} "
        f"(target 0: answers now carry their own version, and a group spanning a swap is kept).",
        f"Trainer idle fraction (waiting for groups): {phases.get('wait', 0.0) / loop.seconds:.0%}. "
        f"Swaps, by phase (the generator's `pop_generator_swap_phase_seconds`): {swap or 'none'}.",
        f"vLLM generated {loop.generated_tokens:,.0f} tokens, {loop.answer_tokens:,} of them the answers "
        f"trained on ({loop.answer_tokens / max(loop.generated_tokens, 1):.0%}); the rest are task proposals "
        f"and answers to groups that were dropped or not yet read. The generator alone samples "
        f"{loop.raw_tokens_per_second:.0f} answer tokens/s on these prompts.",
    ])
    # fmt: on


def measure(steps: int | None = None) -> str:
    """Run both (``steps`` updates each; default: the config's) and write the loop's component costs
    to ``COSTS`` for the scaling model."""
    config = RunConfig.from_file(CONFIG)
    if steps is not None:
        config = config.model_copy(update={"trainer": config.trainer.model_copy(update={"max_steps": steps})})
    with tempfile.TemporaryDirectory() as home:
        loop = run_loop(config, Path(home) / "stack")
        trl = run_trl(config, loop.prompts, Path(home) / "trl")
    COSTS.write_text(json.dumps(loop.costs, indent=2) + "\n")
    return table(loop, trl, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="Updates in each run (default: the config's 8).")
    print(measure(parser.parse_args().steps))


if __name__ == "__main__":
    main()
