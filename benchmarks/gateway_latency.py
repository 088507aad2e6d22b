"""The gateway's latency at fixed request rates (open loop: requests leave on schedule whether or not
earlier ones answered), on loopback, for the dashboard's and the trainer's reads.

    python -m benchmarks.gateway_latency [--rates 25,50,100,200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from benchmarks.gateway_load import running_gateway


async def at_rate(url: str, path: str, rate: int, seconds: float) -> tuple[list[float], int]:
    """(latencies in ms, answers that were not 2xx)."""
    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one() -> None:
            nonlocal failed
            started = time.perf_counter()
            try:
                response = await client.get(path)
                failed += response.status_code >= 300
            except httpx.HTTPError:
                failed += 1
            latencies.append((time.perf_counter() - started) * 1000)

        tasks, start = [], time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, failed


def table(rows: list[tuple[int, list[float], int]]) -> str:
    lines = ["| rate (req/s) | requests | p50 (ms) | p99 (ms) | non-2xx |", "|---|---|---|---|---|"]
    for rate, latencies, failed in rows:
        p50, p99 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[98]
        lines.append(f"| {rate} | {len(latencies)} | {p50:.1f} | {p99:.1f} | {failed} |")
    return "\n".join(lines)


def measure(rates: list[int], seconds: float, database_url: str | None, redis_url: str) -> str:
    with running_gateway(database_url, redis_url) as (url, run_id):
        rows = [(r, *asyncio.run(at_rate(url, f"/v1/runs/{run_id}", r, seconds))) for r in rates]
    return table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="25,50,100,200")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--database-url", default=os.environ.get("POP_BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    print(measure([int(r) for r in args.rates.split(",")], args.seconds, args.database_url, args.redis_url))


if __name__ == "__main__":
    main()
