"""Hot-swap latency on the real vLLM generator: full weights and LoRA adapters, against the floor of
reading the checkpoint's bytes, while a constant load of chat requests runs; every request that
fails or stalls during the swaps is counted (the target is none).

    python -m benchmarks.swap [--model pop/smollm2-135m-instruct] [--swaps 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.metrics import histogram_sums, scrape
from cli.stack import free_port
from shared.files import sha256_file
from shared.modeling import resolve_model
from tests.processes import service_process

STALL_S = 30.0
PHASES = {
    "full": ("verify", "checksum", "pause", "reload", "finish"),  # no drain: in-flight requests are kept
    "lora": ("verify", "checksum", "-", "load", "finish"),
}


@dataclass(eq=False)  # a thread must stay hashable
class Load(threading.Thread):
    """Two clients asking for short completions back to back, all through the swaps."""

    url: str
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _client(self) -> None:
        body = {"model": "policy", "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 16}
        with httpx.Client(timeout=STALL_S) as client:
            while not self.stop.is_set():
                try:
                    reply = client.post(f"{self.url}/v1/chat/completions", json=body)
                    if reply.status_code == 200:
                        self.answered += 1
                    else:
                        self.failed.append(f"{reply.status_code}: {reply.text[:120]}")
                except httpx.HTTPError as exc:  # a timeout here is a stall
                    self.failed.append(repr(exc))


def read_floor(files: list[Path]) -> float:
    """Seconds to read the checkpoint's bytes (page cache warm, as it is right after the trainer wrote it)."""
    for path in files:
        path.read_bytes()
    started = time.perf_counter()
    for path in files:
        path.read_bytes()
    return time.perf_counter() - started


def make_adapter(model_path: str, folder: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(str(folder), safe_serialization=True)


def swap(client: httpx.Client, url: str, version: int, path: Path, mode: str) -> float:
    checksums = {p.name: sha256_file(p) for p in path.iterdir() if p.is_file()}  # as a manifest lists them
    body = {"version": version, "path": str(path), "run_id": "bench", "mode": mode, "checksums": checksums}
    started = time.perf_counter()
    reply = client.post(f"{url}/v1/policy/swap", json=body, timeout=600)
    reply.raise_for_status()
    return time.perf_counter() - started


def phases(url: str) -> dict[tuple[str, str], float]:
    """Mean seconds per (mode, phase) of every swap so far, from the generator's own histogram."""
    samples = scrape(url)
    return {
        (mode, phase): seconds / count
        for mode in PHASES
        for phase, (seconds, count) in histogram_sums(
            {k: v for k, v in samples.items() if f"mode={mode}" in k}, "pop_generator_swap_phase_seconds", "phase"
        ).items()
        if count
    }


def phase_row(mode: str, spent: dict[tuple[str, str], float]) -> str:
    cells = [f"{spent[mode, p]:.3f}" if (mode, p) in spent else "-" for p in PHASES[mode]]
    return f"| {mode} | {' | '.join(cells)} |"


def measure(model: str, swaps: int) -> str:
    model_path = resolve_model(model)
    with tempfile.TemporaryDirectory() as home:
        root = Path(home) / "checkpoints"
        full = [root / "bench" / f"v{v:06d}" for v in (1, 2)]
        for folder in full:
            shutil.copytree(model_path, folder)
        lora = [root / "bench" / f"v{v:06d}" for v in (3, 4)]
        for seed, folder in enumerate(lora):
            make_adapter(model_path, folder, seed)
        port, admin_port = free_port(), free_port()
        # The folder resolved above: the generator loads the same files, whatever HF_HUB_OFFLINE says.
        env = {"POP_GENERATOR_PORT": str(port), "POP_GENERATOR_ADMIN_PORT": str(admin_port),
               "POP_GENERATOR_MODEL": model_path, "POP_GENERATOR_DTYPE": "float32",
               "POP_GENERATOR_ENABLE_LORA": "true", "POP_GENERATOR_CHECKPOINT_ROOT": str(root)}  # fmt: skip
        url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
        argv = [sys.executable, "-m", "services.generator"]
        with service_process(argv, env, f"{url}/readyz", Path(home) / "generator.log"):
            load = Load(url)
            load.start()
            time.sleep(2.0)
            rows = []
            with httpx.Client() as client:
                for mode, folders in (("full", full), ("lora", lora)):
                    seconds = [
                        swap(client, admin, int(folders[i % 2].name[1:]), folders[i % 2], mode) for i in range(swaps)
                    ]
                    files = sorted(folders[0].glob("*.safetensors"))
                    size = sum(f.stat().st_size for f in files) / 2**20
                    rows.append((mode, size, statistics.median(seconds), max(seconds), read_floor(files)))
            load.stop.set()
            load.join()
            spent = phases(url)
    lines = [
        "| mode | checkpoint (MiB) | swap p50 (s) | swap max (s) | disk-read floor (s) | p50 / floor |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m} | {size:.1f} | {p50:.3f} | {worst:.3f} | {floor:.3f} | {p50 / floor:.1f} |"
            for m, size, p50, worst, floor in rows
        ),
        "",
        "Where a swap's time goes (mean s, from the generator's `pop_generator_swap_phase_seconds`):",
        "",
        "| mode | verify (path, files, fit) | sha256 (full: before the pause; LoRA: not hidden by the load) "
        "| pause (no drain) | reload / load | finish (resume) |",
        "|---|---|---|---|---|---|",
        *(
            "| " + " | ".join([m, *(f"{spent[m, p]:.3f}" if (m, p) in spent else "-" for p in PHASES[m])]) + " |"
            for m in PHASES
        ),
        "",
        f"Requests during the swaps: {load.answered} answered, {len(load.failed)} failed or stalled (> {STALL_S:.0f} s)"
        + (f": {load.failed[:3]}" if load.failed else "."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pop/smollm2-135m-instruct")
    parser.add_argument("--swaps", type=int, default=4)
    args = parser.parse_args()
    print(measure(args.model, args.swaps))


if __name__ == "__main__":
    main()
