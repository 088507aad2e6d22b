"""Scaling on paper: a step-time model of the loop built from per-component costs, checked against
the CPU run measured here, then used to predict Qwen2.5-7B on one and on eight H200s.

A step trains ``groups`` groups of ``k`` answers. Its parts:

- generate: proposals, answers and (with a model judge) rubrics and verdicts, at the generator's
  saturated decode rate, split over the replicas;
- update: forward and backward over prompt + answer tokens at the trainer's rate;
- checkpoint: write the weights (or the adapter);
- swap: drain in-flight requests, verify the checksum, load the bytes; generation stops meanwhile.

Colocated (one device, generation held during the update: what runs on the CPU here), the parts add
up. Disaggregated (replicas and trainer on their own devices, ``max_staleness`` >= 1), generation of
step n+1 overlaps the update of step n, and a step takes the longer of the two sides; the swap stalls
both (the trainer waits on it, the generator cannot decode during it).

    python -m benchmarks.scaling
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Workload:
    groups: int
    k: int
    prompt_tokens: float
    answer_tokens: float
    proposal_tokens: float
    """Generated per trained group besides its answers: proposals (rejected ones too) and answers of
    groups that were never trained on."""
    judge_tokens: float
    """Generated per group by a model judge (rubric + verdicts); 0 for programmatic criteria."""

    @property
    def generated(self) -> float:
        return self.groups * (self.k * self.answer_tokens + self.proposal_tokens + self.judge_tokens)

    @property
    def trained(self) -> float:
        return self.groups * self.k * (self.prompt_tokens + self.answer_tokens)


@dataclass(frozen=True)
class Costs:
    """Per-component rates: measured on the CPU here, assumed (and said so) for GPUs."""

    decode_tokens_s: float
    """One generator replica's decode throughput at the loop's concurrency."""
    train_tokens_s: float
    """One trainer device's forward + backward throughput."""
    weight_bytes: float
    """What a swap loads: the served version (in the served dtype), or the adapter."""
    checkpoint_bytes: float
    """What a step writes and hashes on its path: the served version (the resumable state is written in the
    background every ``resume_every`` steps)."""
    write_bytes_s: float
    """The checkpoint's effective rate: write, then sha256 for the manifest."""
    hash_bytes_s: float
    """The generator's sha256 of the weights it is told to load; it runs during the drain."""
    load_bytes_s: float
    """A swap's reload: read, convert, copy into the engine, reset the cache, resume."""
    drain_s: float
    """Waiting for in-flight requests before a full-weight swap; 0 for LoRA (no pause)."""


def colocated(w: Workload, c: Costs) -> dict[str, float]:
    return {
        "generate": w.generated / c.decode_tokens_s,
        "update": w.trained / c.train_tokens_s,
        "checkpoint": c.checkpoint_bytes / c.write_bytes_s,
        "swap": max(c.drain_s, c.weight_bytes / c.hash_bytes_s) + c.weight_bytes / c.load_bytes_s,
    }


def disaggregated(w: Workload, c: Costs, replicas: int, trainers: int) -> dict[str, float]:
    parts = colocated(w, c)
    generate = parts["generate"] / replicas + parts["swap"]
    train = parts["update"] / trainers + parts["checkpoint"] + parts["swap"]
    return {"generator side": generate, "trainer side": train}


def episodes_per_s(w: Workload, parts: dict[str, float], overlap: bool) -> float:
    step = max(parts.values()) if overlap else sum(parts.values())
    return w.groups * w.k / step


COSTS = Path(__file__).parent / "cpu-costs.json"
"""Written by ``python -m benchmarks trl_vs_loop``: the CPU run's workload, component rates and
measured seconds a step."""


def measured_cpu() -> tuple[Workload, Costs, float]:
    data = json.loads(COSTS.read_text())
    return Workload(**data["workload"]), Costs(**data["costs"]), float(data["measured_step_s"])


# Qwen2.5-7B (7.6e9 parameters) on H200s. Assumptions, not measurements: decode 20k tokens/s a replica
# (half the HBM roofline at batch 256, 1k-token contexts); training at 40% MFU of 989 TFLOP/s bf16
# (6 FLOPs a parameter a token; 4 for LoRA, which skips the weight gradients); each step writes the served
# version, bf16 weights (15.2 GB), at 0.9 GB/s (NVMe at 2 GB/s, then sha256) on the step's path, while the
# resumable state (fp32 weights and Adam's moments, 91 GB) is written every resume_every steps in the
# background, off that path; sha256 at 1.5 GB/s (one core); reload at 3 GB/s; a 3 s drain (512 decode
# steps). LoRA r=16 on every linear layer: 40M parameters, a 161 MB float32 adapter.
QWEN_WORKLOAD = Workload(
    groups=32, k=8, prompt_tokens=256, answer_tokens=512, proposal_tokens=600, judge_tokens=2400
)  # fmt: skip
QWEN_FULL = Costs(decode_tokens_s=20_000, train_tokens_s=0.4 * 989e12 / (6 * 7.6e9), weight_bytes=15.2e9,
                  checkpoint_bytes=15.2e9, write_bytes_s=0.9e9, hash_bytes_s=1.5e9, load_bytes_s=3e9,
                  drain_s=3.0)  # fmt: skip
QWEN_LORA = replace(QWEN_FULL, train_tokens_s=0.4 * 989e12 / (4 * 7.6e9), weight_bytes=161e6,
                    checkpoint_bytes=161e6, drain_s=0.0)  # fmt: skip
QWEN_BROADCAST = replace(QWEN_FULL, checkpoint_bytes=0.0, hash_bytes_s=float("inf"), load_bytes_s=100e9,
                         drain_s=0.0)  # fmt: skip
"""Not built: bf16 weights sent trainer -> replicas over NVLink (~100 GB/s) as an in-flight update (no
drain, no checksum: nothing touches a disk on the step's path; the served version and the state are
written in the background). The row says what building it would buy."""


def table() -> str:
    cpu_workload, cpu_costs, cpu_step = measured_cpu()
    cpu = colocated(cpu_workload, cpu_costs)
    rows = [
        ("CPU here, colocated (model)", cpu_workload, cpu, False),
        ("7B, 1 GPU, LoRA, colocated (as built)", QWEN_WORKLOAD, colocated(QWEN_WORKLOAD, QWEN_LORA), False),
        ("7B, 8 GPUs: 4 replicas + 4 FSDP, full weights via disk (as built)", QWEN_WORKLOAD,
         disaggregated(QWEN_WORKLOAD, QWEN_FULL, 4, 4), True),
        ("7B, 8 GPUs: 6 replicas + 2 data parallel, LoRA (as built)", QWEN_WORKLOAD,
         disaggregated(QWEN_WORKLOAD, QWEN_LORA, 6, 2), True),
        ("7B, 8 GPUs: 4 + 4, full weights by broadcast (not built)", QWEN_WORKLOAD,
         disaggregated(QWEN_WORKLOAD, QWEN_BROADCAST, 4, 4), True),
    ]  # fmt: skip
    lines = [
        "| setup | step parts (s) | step (s) | episodes/s | answer tokens/s |",
        "|---|---|---|---|---|",
    ]
    for name, w, parts, overlap in rows:
        step = max(parts.values()) if overlap else sum(parts.values())
        shown = ", ".join(f"{p} {s:.1f}" for p, s in parts.items())
        rate = episodes_per_s(w, parts, overlap)
        lines.append(f"| {name} | {shown} | {step:.1f} | {rate:.2f} | {rate * w.answer_tokens:,.0f} |")
    lines += [
        "",
        f"Check against the CPU run ({COSTS.name}): the model gives {sum(cpu.values()):.0f} s a step; the loop "
        f"measured {cpu_step:.0f} s, start-up included.",
    ]
    return "\n".join(lines)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()
