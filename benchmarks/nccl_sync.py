"""The NCCL weight-sync part of the GPU smoke check: the trainer's ``NcclTransport`` pushing a small model's
weights to two generator replicas, timed, then checked by what the replicas answer.

Two POP generators (``POP_GENERATOR_WEIGHT_SYNC=nccl``, vLLM's weight-transfer routes enabled with
``VLLM_SERVER_DEV_MODE=1``) serve SmolLM2-135M-Instruct in float32 (greedy decoding without ties); this
process holds a perturbed copy of the same model on the GPU, as a trainer would after an update, and pushes
it ``--pushes`` times. Then both replicas must report the push's weight version and answer greedily
exactly as transformers does with the perturbed weights (and differently from before the push).

NCCL refuses two ranks of one communicator on one GPU ("Duplicate GPU detected"). With 3 or more GPUs the
trainer takes GPU 0 and the replicas GPUs 1 and 2, as in a deployment. With fewer, all three share GPU 0
and each process gets its own ``NCCL_HOSTID``, so NCCL treats them as separate hosts and sends over
loopback sockets: the check of correctness holds, the seconds per sync are not a figure to quote.

    python -m benchmarks.gpu_smoke nccl [--model pop/smollm2-135m-instruct] [--pushes 3]
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import torch

PROMPTS = ["The capital of France is", "Write one sentence about the sea:"]
TOKENS = 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def replica(model: str, index: int, gpu: int, shared_gpu: bool, home: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "POP_GENERATOR_PORT": str(port),
        "POP_GENERATOR_MODEL": model,
        "POP_GENERATOR_DTYPE": "float32",
        "POP_GENERATOR_MAX_MODEL_LEN": "2048",
        "POP_GENERATOR_WEIGHT_SYNC": "nccl",
        "POP_GENERATOR_CHECKPOINT_ROOT": str(home / "checkpoints"),
        "POP_GENERATOR_EXTRA_ARGS": "--gpu-memory-utilization 0.08",
        "VLLM_SERVER_DEV_MODE": "1",
        "CUDA_VISIBLE_DEVICES": str(gpu),
    }
    if shared_gpu:
        env |= {"NCCL_HOSTID": f"pop-smoke-replica-{index}", "NCCL_SOCKET_IFNAME": "lo", "NCCL_IB_DISABLE": "1"}
    url = f"http://127.0.0.1:{port}"
    with (home / f"replica-{index}.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.generator"], env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 600
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"replica {index} exited ({process.returncode}); see {home}/replica-{index}.log")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"replica {index} not ready in 10 minutes; see {home}/replica-{index}.log")
                time.sleep(2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def greedy(url: str) -> list[list[int]]:
    """Each prompt's greedy completion, as token ids (vLLM's ``return_token_ids``)."""
    answers = []
    for prompt in PROMPTS:
        body = {"model": "policy", "prompt": prompt, "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True,
                "return_token_ids": True}  # fmt: skip
        response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
        response.raise_for_status()
        answers.append(list(response.json()["choices"][0]["token_ids"]))
    return answers


def reference(model: Any, tokenizer: Any) -> list[list[int]]:
    """What transformers answers greedily with these weights (float32, as the replicas serve)."""
    answers = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
        out = model.generate(ids, max_new_tokens=TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        answers.append(out[0, ids.shape[1] :].tolist())
    return answers


def agree(a: list[list[int]], b: list[list[int]]) -> int:
    """How many leading tokens two answer lists share, summed over prompts."""
    total = 0
    for x, y in zip(a, b, strict=True):
        total += next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    return total


def run(model_name: str, pushes: int) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: the NCCL weight sync needs one")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.trainer.transport import NcclTransport
    from shared.modeling import resolve_model
    from shared.schemas import WeightMode
    from shared.settings import TrainerSettings

    folder = resolve_model(model_name)
    gpus = torch.cuda.device_count()
    shared_gpu = gpus < 3
    if shared_gpu:
        os.environ |= {"NCCL_HOSTID": "pop-smoke-trainer", "NCCL_SOCKET_IFNAME": "lo", "NCCL_IB_DISABLE": "1"}
        print(f"{gpus} GPU(s): trainer and both replicas on GPU 0, NCCL over loopback (seconds not representative)")
    home = Path(tempfile.mkdtemp(prefix="pop-nccl-smoke-"))
    with (
        replica(folder, 0, 0 if shared_gpu else 1, shared_gpu, home) as a,
        replica(folder, 1, 0 if shared_gpu else 2, shared_gpu, home) as b,
    ):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        policy: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        policy = policy.to(torch.device("cuda", 0))
        policy.generation_config.eos_token_id = None  # run on past an end token, as the replicas do (ignore_eos)
        before = reference(policy, tokenizer)
        served_before = [greedy(a), greedy(b)]
        print(f"before: replicas agree with transformers on {[agree(s, before) for s in served_before]} "
              f"of {TOKENS * len(PROMPTS)} tokens")  # fmt: skip
        torch.manual_seed(0)
        with torch.no_grad():  # a trainer's update, in effect: every weight moves
            for param in policy.parameters():
                param.add_(torch.randn_like(param) * 0.02 * (param.float().std() if param.numel() > 1 else 1.0))
        after = reference(policy, tokenizer)
        settings = TrainerSettings(
            weight_sync="nccl", weight_sync_urls=[a, b], weight_sync_master_port=free_port(), hold_seconds=300
        )
        transport = NcclTransport(settings, "smoke", torch.float32, WeightMode.full)
        seconds = []
        try:
            for version in range(1, pushes + 1):
                started = time.perf_counter()
                if not transport.push(policy, version, None):
                    raise SystemExit(f"push of v{version} failed; replica logs in {home}")
                seconds.append(time.perf_counter() - started)
                transport.client.release()  # what the generator's transport=nccl swap will do
            tags = transport.client.tags()
        finally:
            transport.close()
        megabytes = sum(p.numel() * 4 for p in policy.parameters()) / 1e6
        print(f"\n| push | seconds |\n|---|---|\n| first (forms the NCCL group) | {seconds[0]:.3f} |")
        if len(seconds) > 1:
            print(f"| later, median of {len(seconds) - 1} | {statistics.median(seconds[1:]):.3f} |")
        print(f"({megabytes:.0f} MB of float32 weights to 2 replicas; a push includes the hold of each replica)")
        served_after = [greedy(a), greedy(b)]
        print(f"after: weight versions {tags}; replicas agree with transformers on "
              f"{[agree(s, after) for s in served_after]} of {TOKENS * len(PROMPTS)} tokens")  # fmt: skip
        problems = []
        if tags != [f"smoke:v{pushes}"] * 2:
            problems.append(f"weight versions {tags}, expected smoke:v{pushes} on both")
        if before == after:
            problems.append("the perturbation did not change transformers' greedy answers: nothing to check")
        if served_after != [after, after]:
            problems.append("a replica's greedy answers differ from transformers' with the pushed weights")
        if problems:
            raise SystemExit("NCCL weight sync check failed: " + "; ".join(problems) + f" (logs in {home})")
        print("both replicas answer with the pushed weights")
