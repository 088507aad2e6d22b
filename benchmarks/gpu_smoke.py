"""The GPU smoke check behind ``scripts/gpu-smoke.sh``: what the trainer and the loop do on a CUDA device.

``trainer``: real updates on the GPU through the trainer's own ``Policy`` for two architectures,
SmolLM2-135M's and Qwen2.5-1.5B's, with random weights (the check must run on a machine that reaches
no hub; the cost of an update does not depend on the weights' values) and the project's tiny
tokenizer: update tokens/s and peak GPU memory for fp32, bf16 mixed precision and bf16 with gradient
checkpointing, DPO (reference offloaded) and GRPO, beside ``benchmarks/memory.py``'s estimate; then
what a step writes for the 1.5B model: the served version (bf16, sharded) and the resumable state
(its critical-path copy and its background write).

``loop``: the whole stack on this machine (needs vLLM and Redis): the generator and the trainer on
the GPU, SmolLM2-135M-Instruct served in bf16, 3 steps with hot-swaps, then rollbacks to v1 and v0;
step and swap times.

``nccl``: ``benchmarks/nccl_sync.py``: the trainer's NCCL weight sync to two generator replicas (needs vLLM).

    python -m benchmarks.gpu_smoke trainer [--updates 3]
    python -m benchmarks.gpu_smoke loop [--model pop/smollm2-135m-instruct] [--dtype bfloat16]
    python -m benchmarks.gpu_smoke nccl [--model pop/smollm2-135m-instruct] [--pushes 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import memory
from benchmarks.update_compute import synthetic_groups

SHAPES: dict[str, dict[str, Any]] = {
    "SmolLM2-135M": {
        "model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True,
        "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
    },
    "Qwen2.5-1.5B": {
        "model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    },
}  # fmt: skip
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "bf16 + checkpointing": {"precision": "bf16", "gradient_checkpointing": True},
}
GIB = 1024**3


def random_model(name: str, dest: Path) -> Path:
    """``name``'s architecture with random weights (stored in bf16) and the tiny model's tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from shared.modeling.tiny import _train_tokenizer

    tokenizer = _train_tokenizer(2048)
    spec = dict(SHAPES[name])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    return dest


def update_row(folder: Path, algorithm: str, options: dict[str, Any], updates: int) -> dict[str, float]:
    from services.trainer.policy import Policy
    from shared.config import DPOConfig, GRPOConfig, TrainerConfig

    algo = DPOConfig(beta=0.1) if algorithm == "dpo" else GRPOConfig()
    policy = Policy(str(folder), TrainerConfig(algorithm=algo, micro_batch_size=8, **options))
    groups = synthetic_groups(policy, groups=2, answers=4)
    torch.cuda.reset_peak_memory_stats()
    rates = []
    for i in range(updates + 1):
        result = policy.update(groups)
        if i:
            rates.append(result.metrics["tokens_per_second"])
    peak = torch.cuda.max_memory_allocated()
    del policy
    gc.collect()
    torch.cuda.empty_cache()
    return {"tokens_per_second": statistics.median(rates), "peak_gib": peak / GIB}


def predicted_gib(name: str) -> float | None:
    shape = {"Qwen2.5-1.5B": memory.QWEN_1_5B}.get(name)
    if shape is None:
        return None
    batch = memory.Batch(sequences=8, prompt_tokens=110, completion_tokens=158)  # synthetic_groups' means
    return memory.gpu_bytes(shape, "full", 1, "replicate", batch) / GIB


def trainer(updates: int) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: the trainer part of the GPU smoke needs one")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}\n")
    print("| model (random weights) | algorithm | option | update tokens/s | peak GPU GiB | memory.py estimate GiB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as home:
        folders = {}
        for name in SHAPES:
            folders[name] = random_model(name, Path(home) / name)
            for algorithm in ("dpo", "grpo"):
                for variant, options in VARIANTS.items():
                    try:
                        row = update_row(folders[name], algorithm, options, updates)
                    except Exception as exc:  # one row's failure (out of memory, say) is a finding, not the end
                        print(f"| {name} | {algorithm} | {variant} | failed: {exc!r:.120} | | |", flush=True)
                        gc.collect()
                        torch.cuda.empty_cache()
                        continue
                    estimate = predicted_gib(name) if variant == "bf16 + checkpointing" and algorithm == "dpo" else None
                    print(
                        f"| {name} | {algorithm} | {variant} | {row['tokens_per_second']:,.0f} | {row['peak_gib']:.2f} "
                        f"| {f'{estimate:.1f}' if estimate else '-'} |",
                        flush=True,
                    )
        writes(folders["Qwen2.5-1.5B"], Path(home) / "checkpoints")


def writes(folder: Path, root: Path) -> None:
    """What one step writes for the model in ``folder``: the served version and the resumable state."""
    from services.trainer.policy import Policy
    from services.trainer.saving import Saver
    from shared.config import DPOConfig, RunConfig, TrainerConfig
    from shared.settings import TrainerSettings

    cfg = TrainerConfig(algorithm=DPOConfig(beta=0.1), precision="bf16", gradient_checkpointing=True)
    policy = Policy(str(folder), cfg)
    policy.update(synthetic_groups(policy, groups=2, answers=4))
    settings = TrainerSettings(checkpoint_dir=root, served_dtype="bfloat16", served_shard_size="1GB")
    saver = Saver("smoke", RunConfig(model=str(folder), trainer=cfg), settings, None)
    started = time.perf_counter()
    path, manifest = saver.served(policy, 1, 1, [], {})
    served_s = time.perf_counter() - started
    served_bytes = sum(p.stat().st_size for p in path.glob("*.safetensors"))
    started = time.perf_counter()
    saver.begin_state(policy, 1, {"step": 1, "version": 1, "covered": []})
    staged_s = time.perf_counter() - started
    policy.update(synthetic_groups(policy, groups=2, answers=4))  # training goes on while the state is written
    written = saver.finish_state()
    total_s = time.perf_counter() - started
    assert written is not None
    state_bytes = sum(p.stat().st_size for p in written.folder.iterdir())
    print(f"\n| {folder.name}: one step writes | bytes | seconds |\n|---|---|---|")
    shards = len(list(path.glob("*.safetensors")))
    index = " + index" if (path / "model.safetensors.index.json").is_file() else ""
    print(f"| served version (bf16, {shards} safetensors file(s){index}, sha256 of each) | {served_bytes / 1e9:.2f} GB "
          f"| {served_s:.1f} (critical path) |")  # fmt: skip
    print(f"| resumable state (fp32 weights + AdamW, DCP) | {state_bytes / 1e9:.2f} GB | {staged_s:.1f} on the "
          f"critical path (copy to CPU), {total_s:.1f} until on disk, an update beside it |")  # fmt: skip
    print(f"| manifest files | {len(manifest.files)} | |")


def loop(model: str, dtype: str, steps: int) -> None:
    """The stack on this machine: a run of ``steps`` swapped steps, then rollbacks to v1 and v0."""
    import os

    import httpx

    from cli.stack import LocalStack, StackOptions
    from shared.config import RunConfig

    home = Path(tempfile.mkdtemp(prefix="pop-gpu-smoke-"))
    options = StackOptions(home=home, model=model, generator_dtype=dtype, max_model_len=4096,
                           redis_url=os.environ.get("REDIS_URL"))  # fmt: skip
    if torch.cuda.is_available():  # one GPU for both: vLLM takes a third, the trainer the rest
        options.extra_env = {"POP_GENERATOR_EXTRA_ARGS": "--gpu-memory-utilization 0.3"}
    config = RunConfig.model_validate({
        "name": "gpu-smoke", "model": model,
        "selfplay": {"group_size": 4, "max_answer_tokens": 96, "concurrency": 4},
        "judge": {"extra_criteria": [{"name": "brief", "weight": 1,
                                      "check": {"type": "word_count", "min_words": 1, "max_words": 40}}]},
        "trainer": {"algorithm": {"name": "grpo"}, "max_steps": steps, "groups_per_step": 2, "max_staleness": 1},
    })  # fmt: skip
    started = time.perf_counter()
    with LocalStack(options) as stack:
        print(f"stack up in {time.perf_counter() - started:.0f} s ({home})")
        created = httpx.post(f"{stack.gateway_url}/v1/runs", json=config.model_dump(mode="json"), timeout=60)
        created.raise_for_status()
        run_id = created.json()["id"]
        deadline = time.monotonic() + 1800
        while (run := httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=30).json())["status"] in (
            "pending",
            "running",
        ):
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} did not end in 30 minutes; logs in {home}/logs")
            time.sleep(1.0)
        if run["status"] != "completed":
            raise SystemExit(f"run {run_id} {run['status']}: {run.get('error')}; logs in {home}/logs")
        print("\n| step | seconds | update s | mean reward | generator serves |\n|---|---|---|---|---|")
        for s in run["steps"]:
            m = s["metrics"]
            print(f"| {s['step']} | {m.get('step_seconds', 0):.1f} | {m.get('update_seconds', 0):.1f} "
                  f"| {s['mean_score']} | v{s['policy_version']} |")  # fmt: skip
        print("\n| rollback to | seconds | served |\n|---|---|---|")
        for version in (1, 0):
            swap = httpx.post(f"{stack.gateway_url}/v1/runs/{run_id}/rollback", json={"version": version}, timeout=600)
            swap.raise_for_status()
            served = httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=30).json()
            assert served["version"] == version, served
            print(f"| v{version} | {swap.json()['seconds']:.2f} | v{served['version']} |")
        from benchmarks.metrics import histogram_sums, scrape

        phases = histogram_sums(scrape(stack.generator_url), "pop_generator_swap_phase_seconds", "phase")
        print("\n| swap phase (the generator's histogram) | mean s | count |\n|---|---|---|")
        for phase, (total, count) in phases.items():
            print(f"| {phase} | {total / max(count, 1):.3f} | {count:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    t = sub.add_parser("trainer", help="updates and checkpoint writes on the GPU (no vLLM needed)")
    t.add_argument("--updates", type=int, default=3)
    lp = sub.add_parser("loop", help="the whole stack, generator and trainer on the GPU (vLLM and Redis needed)")
    lp.add_argument("--model", default="pop/smollm2-135m-instruct")
    lp.add_argument("--dtype", default="bfloat16")
    lp.add_argument("--steps", type=int, default=3)
    nc = sub.add_parser("nccl", help="NCCL weight sync from a trainer to two generator replicas (vLLM needed)")
    nc.add_argument("--model", default="pop/smollm2-135m-instruct")
    nc.add_argument("--pushes", type=int, default=3)
    args = parser.parse_args()
    if args.part == "trainer":
        trainer(args.updates)
    elif args.part == "nccl":
        from benchmarks import nccl_sync

        nccl_sync.run(args.model, args.pushes)
    else:
        loop(args.model, args.dtype, args.steps)


if __name__ == "__main__":
    main()
