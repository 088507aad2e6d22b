"""What the trainer's compute options cost on this machine: update tokens/s and peak memory of real
DPO and GRPO updates of SmolLM2-135M-Instruct, one row per option.

A realistic batch: DPO, 2 groups of 4 answers (2 pairs, 4 sequences, with the reference's forward);
GRPO, 2 groups of 4 (8 sequences); prompts of 90-130 tokens, answers of 140-175. Each row runs in a
fresh process (so its peak memory is its own): one warm-up update, then ``--updates`` timed ones;
tokens/s is the median of the trainer's own ``tokens_per_second`` (completion tokens over the
update's wall time); tokens/CPU-s divides by the process's CPU time instead (all its threads),
which other work on a shared machine disturbs less. Ratios are to the first row. Memory is the
process's resident set, sampled every 2 ms through the updates (torch's CPU allocations are not
visible to tracemalloc); "over loaded" is the peak less the RSS after loading, i.e. gradients,
optimizer moments and activations; on CUDA also torch's peak allocation on the device.

    python -m benchmarks.update_compute [--algorithms dpo grpo] [--variants fp32 bf16 ...] [--updates 3]
        [--model pop/smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import psutil
import torch

from services.trainer.policy import Policy
from shared.config import DPOConfig, GRPOConfig, TrainerConfig
from shared.schemas import ChatMessage, Completion, Episode, EpisodeGroup, Task

MODEL = "pop/smollm2-135m-instruct"
VARIANTS: dict[str, dict[str, Any]] = {
    "full-logits": {"precision": "fp32", "reference": "device", "full_logits": True},
    "fp32": {"precision": "fp32", "reference": "device"},
    "bf16": {"precision": "bf16", "reference": "device"},
    "fp32-ckpt": {"precision": "fp32", "reference": "device", "gradient_checkpointing": True},
    "bf16-ckpt": {"precision": "bf16", "reference": "device", "gradient_checkpointing": True},
    "offload-ref": {"reference": "offload"},
}
"""Each option as trainer-config overrides, from the computation before these options (float32, logits at
every position, the reference a float32 copy) on; ``full_logits`` is the policy's switch, not a config
field. ``offload-ref`` keeps ``auto`` precision: fp32 on CPU, bf16 on CUDA."""
NEEDS_REFERENCE = {"offload-ref"}
"""Rows that only mean something where there is a reference (DPO here)."""
ALGORITHMS = {"dpo": DPOConfig(beta=0.1), "grpo": GRPOConfig()}


def synthetic_groups(policy: Policy, groups: int, answers: int, seed: int = 0) -> list[EpisodeGroup]:
    """Scored groups of random tokens of realistic lengths (the cost of an update does not depend on them)."""
    rng = random.Random(seed)
    special = set(policy.tokenizer.all_special_ids)
    vocab = [t for t in range(len(policy.tokenizer)) if t not in special]
    out = []
    for g in range(groups):
        task = Task(document_id=f"doc-{g}", prompt="Summarise the document.")
        prompt = [rng.choice(vocab) for _ in range(rng.randint(90, 130))]
        episodes = []
        for a in range(answers):
            ids = [rng.choice(vocab) for _ in range(rng.randint(140, 175))]
            episodes.append(
                Episode(
                    run_id="bench",
                    task_id=task.id,
                    policy_version=0,
                    prompt_messages=[ChatMessage(role="user", content=task.prompt)],
                    prompt_token_ids=prompt,
                    completion=Completion(text="word " * 100, token_ids=ids, logprobs=[-2.0] * len(ids)),
                    reward=float((a * 7 + g) % answers),
                )
            )
        out.append(EpisodeGroup(run_id="bench", task=task, document_id=task.document_id, policy_version=0,
                                episodes=episodes))  # fmt: skip
    return out


class PeakRSS(threading.Thread):
    """The process's resident set, sampled until stopped; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.done = psutil.Process(), 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, self.process.memory_info().rss)


def measure(algorithm: str, variant: str, updates: int, model: str = MODEL) -> dict[str, float]:
    """One row: a fresh policy with the variant's options, one warm-up and ``updates`` timed updates."""
    options = dict(VARIANTS[variant])
    full_logits = options.pop("full_logits", False)
    policy = Policy(model, TrainerConfig(algorithm=ALGORITHMS[algorithm], micro_batch_size=8, **options))
    policy.full_logits = full_logits
    groups = synthetic_groups(policy, groups=2, answers=4)
    loaded = psutil.Process().memory_info().rss
    if policy.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(policy.device)
    sampler = PeakRSS()
    sampler.start()
    rates, cpu_rates = [], []
    for i in range(updates + 1):
        cpu = time.process_time()
        result = policy.update(groups)
        if i:
            rates.append(result.metrics["tokens_per_second"])
            cpu_rates.append(result.metrics["completion_tokens"] / (time.process_time() - cpu))
    sampler.done.set()
    sampler.join()
    gib = 1024**3
    return {
        "tokens_per_second": statistics.median(rates),
        "spread": (max(rates) - min(rates)) / statistics.median(rates),
        "tokens_per_cpu_second": statistics.median(cpu_rates),
        "completion_tokens": result.metrics["completion_tokens"],
        "peak_gib": sampler.peak / gib,
        "over_loaded_gib": (sampler.peak - loaded) / gib,
        "device_gib": torch.cuda.max_memory_allocated(policy.device) / gib if policy.device.type == "cuda" else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--updates", type=int, default=3, help="Timed updates per row (after one warm-up).")
    parser.add_argument("--model", default=MODEL, help=f"A model id, path or pop/ alias (default {MODEL}).")
    parser.add_argument("--one", nargs=2, metavar=("ALGORITHM", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.updates, args.model)))
        return
    print("| algorithm | option | update tokens/s (median) | spread | tokens/CPU-s | peak RSS GiB | over loaded GiB "
          "| GPU peak GiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for algorithm in args.algorithms:
        base: dict[str, float] = {}
        for variant in args.variants:
            if variant in NEEDS_REFERENCE and algorithm != "dpo":
                continue
            started = time.perf_counter()
            argv = [sys.executable, "-m", "benchmarks.update_compute", "--one", algorithm, variant,
                    "--updates", str(args.updates), "--model", args.model]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            base = base or row
            wall, cpu = row["tokens_per_second"], row["tokens_per_cpu_second"]
            device = f"{row['device_gib']:.2f}" if row["device_gib"] else "-"
            print(
                f"| {algorithm} | {variant} | {wall:.1f} ({wall / base['tokens_per_second']:.2f} x) "
                f"| {row['spread']:.0%} | {cpu:.1f} ({cpu / base['tokens_per_cpu_second']:.2f} x) "
                f"| {row['peak_gib']:.2f} | {row['over_loaded_gib']:.2f} | {device} |",
                flush=True,
            )
            print(f"<!-- {algorithm}/{variant}: {time.perf_counter() - started:.0f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main()
