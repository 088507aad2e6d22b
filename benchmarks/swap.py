"""Hot-swap latency on a real fleet of vLLM generators (two replicas by default): what the loop swaps --
the trainer's own served versions, written by its own writer in its served dtype, and LoRA adapters --
fanned out to every replica at once as the gateway does, against the floor of reading the checkpoint's
bytes, while a constant load of chat requests runs on every replica; every request that fails or
stalls during the swaps is counted (the target is none), and so is the time spent draining (none: a
swap pauses in-flight requests in place).

    python -m benchmarks.swap [--model pop/smollm2-135m-instruct] [--swaps 4] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from shared.clients.generator import GeneratorFleet, ReplicaOutcome
from shared.files import sha256_file
from shared.modeling import resolve_model
from shared.schemas import SwapRequest, WeightMode
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


def trainer_versions(model_path: str, root: Path, versions: tuple[int, ...]) -> list[Path]:
    """Served versions as the trainer writes them (its writer, the model's stored dtype, a manifest with a
    sha256 per file), each with weights nudged so a swap really changes what is served."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.trainer.checkpoint import save_checkpoint, served_dtype

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    folders = []
    for version in versions:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
        folder, _ = save_checkpoint(
            model, tokenizer, root, "bench", version, version, model_path, dtype=served_dtype("auto", model_path)
        )
        folders.append(folder)
    return folders


def swap(fleet: GeneratorFleet, version: int, path: Path, mode: str) -> float:
    """Every replica, in parallel (the gateway's fan-out); the seconds until the last one serves it."""
    manifest = path / "manifest.json"
    checksums = (
        json.loads(manifest.read_text())["files"]
        if manifest.is_file()
        else {p.name: sha256_file(p) for p in path.iterdir() if p.is_file()}
    )
    checksums.pop("manifest.json", None)
    request = SwapRequest(version=version, path=str(path), run_id="bench", mode=WeightMode(mode), checksums=checksums)
    started = time.perf_counter()
    outcomes = asyncio.run(_each(fleet, request))
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise RuntimeError(f"swap to v{version} failed on {[(o.url, repr(o.error)) for o in failed]}")
    return time.perf_counter() - started


async def _each(fleet: GeneratorFleet, request: SwapRequest) -> list[ReplicaOutcome]:
    try:
        return await fleet.each(lambda c: c.swap(request, 600))
    finally:
        await fleet.aclose()


def phases(urls: list[str]) -> dict[tuple[str, str], float]:
    """Mean seconds per (mode, phase) of every swap so far on every replica, from their own histograms."""
    totals: dict[tuple[str, str], list[float]] = {}
    for url in urls:
        samples = scrape(url)
        for mode in PHASES:
            mine = {k: v for k, v in samples.items() if f"mode={mode}" in k}
            for phase, (seconds, count) in histogram_sums(mine, "pop_generator_swap_phase_seconds", "phase").items():
                sums = totals.setdefault((mode, phase), [0.0, 0.0])
                sums[0], sums[1] = sums[0] + seconds, sums[1] + count
    return {key: seconds / count for key, (seconds, count) in totals.items() if count}


def phase_row(mode: str, spent: dict[tuple[str, str], float]) -> str:
    cells = [f"{spent[mode, p]:.3f}" if (mode, p) in spent else "-" for p in PHASES[mode]]
    return f"| {mode} | {' | '.join(cells)} |"


def measure(model: str, swaps: int, replicas: int) -> str:
    model_path = resolve_model(model)
    with tempfile.TemporaryDirectory() as home, contextlib.ExitStack() as stack:
        root = Path(home) / "checkpoints"
        full = trainer_versions(model_path, root, (1, 2))
        lora = [root / "bench" / f"v{v:06d}" for v in (3, 4)]
        for seed, folder in enumerate(lora):
            make_adapter(model_path, folder, seed)
        urls, admins = [], []
        for i in range(replicas):
            port, admin_port = free_port(), free_port()
            # The folder resolved above: the generators load the same files, whatever HF_HUB_OFFLINE says.
            env = {"POP_GENERATOR_PORT": str(port), "POP_GENERATOR_ADMIN_PORT": str(admin_port),
                   "POP_GENERATOR_MODEL": model_path, "POP_GENERATOR_DTYPE": "auto",
                   "POP_GENERATOR_ENABLE_LORA": "true", "POP_GENERATOR_CHECKPOINT_ROOT": str(root)}  # fmt: skip
            url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
            argv = [sys.executable, "-m", "services.generator"]
            stack.enter_context(service_process(argv, env, f"{url}/readyz", Path(home) / f"generator-{i}.log"))
            urls.append(url)
            admins.append(admin)
        loads = [Load(url) for url in urls]
        for load in loads:
            load.start()
        time.sleep(2.0)
        rows = []
        for mode, folders in (("full", full), ("lora", lora)):
            seconds = [
                swap(GeneratorFleet(",".join(admins)), int(folders[i % 2].name[1:]), folders[i % 2], mode)
                for i in range(swaps)
            ]
            files = sorted(folders[0].glob("*.safetensors"))
            size = sum(f.stat().st_size for f in files) / 2**20
            rows.append((mode, size, statistics.median(seconds), max(seconds), read_floor(files)))
        for load in loads:
            load.stop.set()
            load.join()
        spent = phases(urls)
        dtype = json.loads((full[0] / "manifest.json").read_text()).get("dtype")
    answered, failed = sum(ld.answered for ld in loads), [f for ld in loads for f in ld.failed]
    swap_total = sum(spent.get(("full", p), 0.0) for p in PHASES["full"])
    lines = [
        f"{replicas} replicas, each swap sent to all at once; full weights: the trainer's served versions ({dtype}).",
        "",
        "| mode | checkpoint (MiB) | swap p50, all replicas (s) | swap max (s) | disk-read floor (s) | p50 / floor |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m} | {size:.1f} | {p50:.3f} | {worst:.3f} | {floor:.3f} | {p50 / floor:.1f} |"
            for m, size, p50, worst, floor in rows
        ),
        "",
        "Where a replica's swap time goes (mean s per replica, from its `pop_generator_swap_phase_seconds`):",
        "",
        "| mode | verify (path, files, fit) | sha256 (full: before the pause; LoRA: not hidden by the load) "
        "| pause (no drain) | reload / load | finish (resume) |",
        "|---|---|---|---|---|---|",
        *(
            "| " + " | ".join([m, *(f"{spent[m, p]:.3f}" if (m, p) in spent else "-" for p in PHASES[m])]) + " |"
            for m in PHASES
        ),
        "",
        f"Draining: {spent.get(('full', 'drain'), 0.0):.3f} s of a full swap's {swap_total:.3f} s (a swap pauses "
        "in-flight requests in place).",
        f"Requests during the swaps, on every replica: {answered} answered, {len(failed)} failed or stalled "
        f"(> {STALL_S:.0f} s)" + (f": {failed[:3]}" if failed else "."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pop/smollm2-135m-instruct")
    parser.add_argument("--swaps", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    print(measure(args.model, args.swaps, args.replicas))


if __name__ == "__main__":
    main()
