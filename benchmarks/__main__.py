"""``python -m benchmarks``: every benchmark, one after another, into ``benchmarks/results.md``.

Each is a script of its own too (``python -m benchmarks.<name> --help``); see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import gateway_latency, gateway_load, queue, scaling, swap, trl_vs_loop

RESULTS = Path(__file__).parent / "results.md"
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE = os.environ.get("POP_BENCH_DATABASE_URL")

BENCHMARKS: dict[str, tuple[str, Callable[[], str]]] = {
    "queue": ("Episode queue (Redis stream)", lambda: asyncio.run(queue.measure(REDIS, 400, 8, 300, 4)).table()),
    "gateway_latency": (
        "Gateway latency at fixed rates (GET /v1/runs/{id}, a run with 50 steps)",
        lambda: gateway_latency.measure([25, 50, 100, 200], 10, DATABASE, REDIS),
    ),
    "gateway_load": (
        "Gateway at full load (wrk: reads and authenticated writes mixed)",
        lambda: gateway_load.load(30, 16, DATABASE, REDIS).table(),
    ),
    "swap": (
        "Hot-swap latency under load (SmolLM2-135M-Instruct, a fleet of 2 replicas)",
        lambda: swap.measure("pop/smollm2-135m-instruct", 3, 2),
    ),
    "trl_vs_loop": (
        "This system's loop vs TRL's GRPOTrainer, and pipeline efficiency (4 steps each)",
        lambda: trl_vs_loop.measure(steps=4),
    ),
    "scaling": ("Scaling on paper (from the costs trl_vs_loop measured)", scaling.table),
}
"""In the order they run: ``scaling`` reads what ``trl_vs_loop`` wrote."""


def machine() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"commit {commit.stdout.strip() or '?'}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"Only these (default: all): {', '.join(BENCHMARKS)}.")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}; there are {', '.join(BENCHMARKS)}")
    sections = [f"# Benchmark results\n\nMeasured by `python -m benchmarks` on {machine()}.\n"]
    began = time.perf_counter()
    for name in args.names or list(BENCHMARKS):
        title, run = BENCHMARKS[name]
        started = time.perf_counter()
        body = run()
        sections.append(
            f"## {title}\n\n`python -m benchmarks {name}` ({time.perf_counter() - started:.0f} s)\n\n{body}\n"
        )
        print(sections[-1], flush=True)
    sections.append(f"All of the above: {(time.perf_counter() - began) / 60:.1f} minutes.\n")
    RESULTS.write_text("\n".join(sections))


if __name__ == "__main__":
    main()
