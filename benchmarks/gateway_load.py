"""The gateway under load: wrk on loopback against a real gateway process (PostgreSQL or SQLite,
Redis), a mix of reads and authenticated writes, for a fixed time. Reports requests/s, latency
percentiles and the count of 4xx/5xx answers.

    python -m benchmarks.gateway_load [--seconds 60] [--connections 16] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from cli.stack import free_port
from tests.processes import service_process

TOKEN = "pop_load-token"
# One request of each kind per round: listing, a run, its metric series, the health probe, and a
# write that takes a transaction (a trainer asking for work; nothing is pending, so 204).
LUA = """
local paths = {"/v1/runs?limit=20", "/v1/runs/RUN", "/v1/runs/RUN/metrics", "/healthz", "/v1/runs/claim"}
local i = 0
request = function()
  i = i % #paths + 1
  local path = paths[i]
  if path == "/v1/runs/claim" then
    return wrk.format("POST", path, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer TOKEN"},
                      '{"trainer": "load"}')
  end
  return wrk.format("GET", path)
end
"""


@dataclass
class LoadResult:
    seconds: int
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    def table(self) -> str:
        return "\n".join([
            "| connections | seconds | requests/s | p50 (ms) | p99 (ms) | requests | non-2xx | socket errors |",
            "|---|---|---|---|---|---|---|---|",
            f"| {self.connections} | {self.seconds} | {self.rps:.0f} | {self.p50_ms:.1f} | {self.p99_ms:.1f} "
            f"| {self.requests} | {self.non_2xx} | {self.socket_errors} |",
        ])  # fmt: skip

    def line(self) -> str:
        return (
            f"{self.seconds} s, {self.connections} connections: {self.rps:.0f} req/s, p50 {self.p50_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms, {self.requests} requests, {self.non_2xx} non-2xx, "
            f"{self.socket_errors} socket errors"
        )


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse(output: str, seconds: int, connections: int) -> LoadResult:
    requests = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return LoadResult(
        seconds=seconds,
        connections=connections,
        requests=requests,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),  # type: ignore[index]
        p50_ms=_ms(re.search(r"50%\s+(\S+)", output)[1]),  # type: ignore[index]
        p99_ms=_ms(re.search(r"99%\s+(\S+)", output)[1]),  # type: ignore[index]
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(map(int, socket.groups())) if socket else 0,
    )


def seed(url: str) -> str:
    """A run with 50 recorded steps: what a dashboard polls."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as client:
        for i in range(20):
            client.post("/v1/runs", json={"name": f"load-{i}", "model": "pop/tiny"}).raise_for_status()
        run_id = client.post("/v1/runs/claim", json={"trainer": "seed"}).json()["id"]
        for step in range(1, 51):
            manifest = {"run_id": run_id, "version": step, "step": step, "base_model": "pop/tiny", "files": {}}
            report = {"step": step, "policy_version": step, "mean_score": step / 50, "metrics": {"loss": 1 / step},
                      "checkpoint_path": f"/ckpt/{run_id}/v{step:06d}", "manifest": manifest}  # fmt: skip
            client.post(f"/v1/runs/{run_id}/steps", json=report).raise_for_status()
    return str(run_id)


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database beside ``database_url``'s, dropped afterwards: runs left in a
    shared database would be claimed by the seed and the load's writes, and skew both."""
    import asyncpg

    base = make_url(database_url)
    name = f"pop_bench_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(
            host=base.host, port=base.port, user=base.username, password=base.password, database=base.database
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextmanager
def running_gateway(database_url: str | None, redis_url: str) -> Iterator[tuple[str, str]]:
    """A gateway process with a seeded run, on a fresh database: (its URL, the run's id)."""
    with tempfile.TemporaryDirectory() as home, ExitStack() as stack:
        if database_url is None:
            database_url = f"sqlite+aiosqlite:///{home}/gateway.db"
        else:
            database_url = stack.enter_context(scratch_database(database_url))
        port = free_port()
        env = {
            "POP_GATEWAY_PORT": str(port),
            "POP_GATEWAY_DATABASE_URL": database_url,
            "POP_GATEWAY_API_TOKENS": TOKEN,
            "POP_GATEWAY_LOG_LEVEL": "warning",
            "REDIS_URL": redis_url,
        }
        url = f"http://127.0.0.1:{port}"
        with service_process([sys.executable, "-m", "services.gateway"], env, f"{url}/healthz", Path(home) / "gw.log"):
            yield url, seed(url)


def load(seconds: int, connections: int, database_url: str | None, redis_url: str) -> LoadResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    with running_gateway(database_url, redis_url) as (url, run_id), tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "mix.lua"
        script.write_text(LUA.replace("RUN", run_id).replace("TOKEN", TOKEN))
        argv = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
        output = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse(output, seconds, connections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("POP_BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    result = load(args.seconds, args.connections, args.database_url, args.redis_url)
    print(result.line())


if __name__ == "__main__":
    main()
