"""What a training setup needs, on paper: memory per GPU, bytes written per step, volume size.

The model counts bytes, as the trainer lays them out (services/trainer/policy.py, sharding.py,
checkpoint.py, state.py):

- full weights: fp32 master weights, fp32 gradients and AdamW's two fp32 moments: 16 bytes a
  parameter, divided over the ranks under FSDP (``POP_TRAINER_SHARDING=fsdp``), whole on every rank
  otherwise. LoRA: the frozen base in fp32 (4 bytes a parameter) plus the adapter's 16 bytes.
- DPO's reference: offloaded to CPU memory (``trainer.reference: offload``, the CUDA default) it
  costs the GPU one layer at a time; under FSDP it is sharded in the stored dtype (2 bytes); LoRA has
  none (the adapter switched off). Before this stage: a second fp32 copy on the GPU (4 bytes).
- activations of one micro-batch with gradient checkpointing and bf16 compute: each layer's fp32
  input kept (4·T·h·L), one layer's activations recomputed in bf16 (T·(16h + 4i)·2), and the logits
  of completion positions only (C·V: bf16 logits, their fp32 log-softmax and its gradient, 12 bytes).
- written per step: the served version (bf16 weights, or the fp32 adapter) every step, and the
  resumable state (fp32 weights and moments: 12 bytes a trained parameter) every ``resume_every``.
- volume: the base model (bf16) in the Hugging Face cache, ``keep_last`` versions, and two states
  while one is written (the old one is removed once the new one is whole).

These are estimates to size a deployment, not measurements; ``scripts/gpu-smoke.sh`` prints the
measured peak of a real update beside this model's figure for the same setup.

    python -m benchmarks.memory
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True)
class Shape:
    name: str
    params: float
    layers: int
    hidden: int
    intermediate: int
    vocab: int


@dataclass(frozen=True)
class Batch:
    """One micro-batch: sequences × (prompt + completion) tokens."""

    sequences: int = 8
    prompt_tokens: int = 256
    completion_tokens: int = 512

    @property
    def tokens(self) -> int:
        return self.sequences * (self.prompt_tokens + self.completion_tokens)

    @property
    def completions(self) -> int:
        return self.sequences * self.completion_tokens


QWEN_1_5B = Shape("Qwen2.5-1.5B", 1.54e9, 28, 1536, 8960, 151936)
QWEN_7B = Shape("Qwen2.5-7B", 7.62e9, 28, 3584, 18944, 152064)
QWEN_14B = Shape("Qwen2.5-14B", 14.7e9, 48, 5120, 13824, 152064)
LORA_PARAMS = {QWEN_1_5B.name: 18.5e6, QWEN_7B.name: 40.4e6, QWEN_14B.name: 68.8e6}
"""Adapter parameters at r=16 on every linear layer."""
OVERHEAD = 2 * GB
"""CUDA context, allocator slack and the communication buffers."""


def activations(shape: Shape, batch: Batch, checkpointing: bool = True) -> float:
    layer = batch.tokens * (16 * shape.hidden + 4 * shape.intermediate) * 2
    kept = 4 * batch.tokens * shape.hidden * shape.layers if checkpointing else layer * shape.layers
    return kept + layer + batch.completions * shape.vocab * 12


def gpu_bytes(shape: Shape, mode: str, gpus: int, sharding: str, batch: Batch, legacy: bool = False) -> float:
    """Peak bytes on one GPU during a DPO update (``mode``: full | lora; ``legacy``: fp32, a second fp32
    reference on the device, no checkpointing, full logits: the trainer before this stage)."""
    split = gpus if sharding == "fsdp" else 1
    layer_bf16 = 2 * shape.params / shape.layers
    if mode == "lora":
        lora = LORA_PARAMS[shape.name]
        return 4 * shape.params + 16 * lora + activations(shape, batch) + OVERHEAD
    if legacy:
        full_logits = Batch(batch.sequences, 0, batch.prompt_tokens + batch.completion_tokens)
        return 20 * shape.params + activations(shape, full_logits, checkpointing=False) + OVERHEAD
    reference = 2 * shape.params / split if sharding == "fsdp" else layer_bf16
    gathered = 2 * layer_bf16 if sharding == "fsdp" else 0.0  # FSDP holds a layer's weights gathered, and the next
    return 16 * shape.params / split + reference + gathered + activations(shape, batch) + OVERHEAD


def written_per_step(shape: Shape, mode: str, resume_every: int) -> tuple[float, float]:
    """(served version bytes, resumable state bytes averaged over a step)."""
    trained = LORA_PARAMS[shape.name] if mode == "lora" else shape.params
    served = 4 * trained if mode == "lora" else 2 * shape.params
    return served, 12 * trained / resume_every


def volume(shape: Shape, mode: str, keep_last: int) -> float:
    trained = LORA_PARAMS[shape.name] if mode == "lora" else shape.params
    served = 4 * trained if mode == "lora" else 2 * shape.params
    return 2 * shape.params + keep_last * served + 2 * 12 * trained


SETUPS = [
    (QWEN_1_5B, "full", 1, "replicate"),
    (QWEN_7B, "lora", 1, "replicate"),
    (QWEN_7B, "full", 1, "replicate"),
    (QWEN_7B, "full", 2, "fsdp"),
    (QWEN_7B, "full", 4, "fsdp"),
    (QWEN_7B, "full", 8, "fsdp"),
    (QWEN_14B, "full", 8, "fsdp"),
]


def table(batch: Batch = Batch(), resume_every: int = 5, keep_last: int = 3) -> str:
    lines = [
        f"Micro-batch: {batch.sequences} sequences × ({batch.prompt_tokens} prompt + {batch.completion_tokens} "
        f"answer) tokens, bf16 compute, gradient checkpointing, DPO; `resume_every: {resume_every}`, "
        f"`keep_last: {keep_last}`. GB = 10⁹ bytes.",
        "",
        "| model | weights | GPUs (sharding) | GPU memory per GPU | fits 80 GB | written per step: version + state | "
        "volume |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, mode, gpus, sharding in SETUPS:
        memory = gpu_bytes(shape, mode, gpus, sharding, batch)
        served, state = written_per_step(shape, mode, resume_every)
        lines.append(
            f"| {shape.name} | {mode} | {gpus} ({sharding}) | {memory / GB:.0f} GB | "
            f"{'yes' if memory <= 80 * GB else 'no'} | {served / GB:.2f} + {state / GB:.1f} GB | "
            f"{volume(shape, mode, keep_last) / GB:.0f} GB |"
        )
    legacy = gpu_bytes(QWEN_7B, "full", 1, "replicate", batch, legacy=True)
    lines += [
        "",
        f"Before this stage, Qwen2.5-7B full-weight DPO on one GPU needed {legacy / GB:.0f} GB (fp32 compute, a "
        f"second fp32 reference on the GPU, logits at every position) and wrote {12 * QWEN_7B.params / GB:.0f} GB "
        "every step (fp32 weights and AdamW's moments in every checkpoint).",
    ]
    return "\n".join(lines)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()
