"""One run on the whole stack (tiny model, a fleet of two generator replicas) survives, one after
another: SIGKILL of the trainer, of one generator replica in the middle of a hot-swap, of the judge, of
the producer and of the gateway, each then restarted, and a crash-restart of Redis (append-only file)
and of PostgreSQL, both the tests' own.

The run completes; the audit then shows every episode group appended to the stream trained exactly
once, dropped with a recorded reason, or unread when the run ended: none lost, none twice; every
checkpoint whole; no replica ever served a version that did not load whole; and the killed replica,
restarted, took no work before the gateway had brought it to the fleet's newest version."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cli.stack import LocalStack
from shared.config import RunConfig
from tests.browser import artifacts_dir
from tests.faults.audit import Ledger, broken_checkpoints, entry_ms, read_ledger
from tests.faults.conftest import AUTH, ROWS, Stack, table

pytestmark = pytest.mark.faults
RUN = """
name: faults
model: pop/tiny
selfplay: {group_size: 4, max_task_chars: 120, max_reference_chars: 120, max_answer_tokens: 24,
           concurrency: 2, max_stream_groups: 4}
judge:
  extra_criteria: [{name: brief, weight: 2, check: {type: word_count, min_words: 1, max_words: 13}}]
trainer: {algorithm: {name: dpo, beta: 0.1}, learning_rate: 1.0e-3, max_steps: 14, groups_per_step: 1,
          max_staleness: 1, resume_every: 3}
"""


class ServedWatcher(threading.Thread):
    """Every (run, version) each replica says it serves, polled throughout, and, in order, what each said
    while it took work: (run, version, admitted)."""

    def __init__(self, admin_urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls, self.seen, self.stopped = admin_urls, set[tuple[str | None, int]](), threading.Event()
        self.timeline: dict[str, list[tuple[float, str | None, int, bool]]] = {u: [] for u in admin_urls}

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            for url in self.urls:
                try:
                    policy = httpx.get(f"{url}/v1/policy", timeout=2).json()
                except (httpx.HTTPError, ValueError):
                    continue  # down or restarting
                self.seen.add((policy["run_id"], policy["version"]))
                self.timeline[url].append((time.time(), policy["run_id"], policy["version"], policy["admitted"]))


def wait_admitted(admin_url: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{admin_url}/v1/policy", timeout=2).json()["admitted"]:
                time.sleep(1.0)  # one more observation by the watcher
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{admin_url} was not admitted within {timeout_s:.0f}s")


def run_state(stack: LocalStack, run_id: str) -> dict:
    while True:  # the gateway or its database may be the thing restarting
        try:
            return httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=5).raise_for_status().json()
        except httpx.HTTPError:
            time.sleep(0.5)


def wait_step(stack: LocalStack, run_id: str, above: int, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while (run := run_state(stack, run_id))["step"] <= above:
        assert run["status"] in ("pending", "running"), run.get("error")
        assert time.monotonic() < deadline, f"no step after {above} within {timeout_s:.0f}s: {run}"
        time.sleep(0.3)
    return run


def faults(stack: Stack) -> list[tuple[str, Callable[[], None]]]:
    local = stack.local

    def restart(name: str) -> Callable[[], None]:
        return lambda: (local.kill(name), local.respawn(name))

    return [
        ("trainer SIGKILL", restart("trainer")),
        ("generator replica SIGKILL at a swap", restart("generator-2")),
        ("judge SIGKILL", restart("judge")),
        ("producer SIGKILL", restart("selfplay")),
        ("gateway SIGKILL", restart("gateway")),
        ("redis crash-restart (AOF)", stack.redis.restart),
        ("postgres crash-restart", stack.postgres.restart),
    ]


def test_the_run_survives_every_fault_and_loses_nothing(stack: Stack):
    local = stack.local
    config = RunConfig.from_yaml(RUN).model_dump(mode="json")
    created = httpx.post(f"{local.gateway_url}/v1/runs", json=config, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    watcher = ServedWatcher(local.generator_admin_urls)
    watcher.start()
    windows: list[tuple[str, float, float]] = []  # (fault, at, recovery seconds)
    step = wait_step(local, run_id, 0)["step"]
    replica_killed: tuple[float, int] | None = None  # when, and the fleet's newest version then
    for name, inject in faults(stack):
        if name.startswith("generator"):
            step = wait_step(local, run_id, step)["step"]  # a step was just reported: its swap is under way
            replica_killed = (time.time(), step)
        at = time.time()
        inject()
        step = wait_step(local, run_id, step)["step"]  # recovered: a step recorded after the fault
        windows.append((name, at, time.time() - at))
    deadline = time.monotonic() + 900
    while (run := run_state(local, run_id))["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, f"the run did not complete: {run}"
        time.sleep(0.5)
    wait_admitted(local.generator_admin_urls[1])  # the killed replica is back and was brought up
    watcher.stopped.set()
    watcher.join()
    assert run["status"] == "completed", run.get("error")
    assert [s["step"] for s in run["steps"]] == list(range(1, 15))
    # The trainer was killed a step or two past its last resumable state (resume_every: 3): its successor
    # took the run back to that state and retrained the steps after it, from their unacknowledged entries.
    assert max(s["metrics"].get("rewound_steps", 0.0) for s in run["steps"]) >= 1

    root = local.checkpoint_dir / run_id
    ledger = read_ledger(local.redis_url, run_id, sorted(p for p in root.glob("v*") if p.is_dir()))
    record(ledger, windows)
    (artifacts_dir() / "faults.md").write_text("\n".join(table()) + "\n")
    fates = Counter(ledger.fate(e) for e in ledger.appended)
    assert fates["lost"] == 0 and fates["duplicated"] == 0, fates
    assert ledger.pending == 0 and fates["trained"] >= 14
    assert broken_checkpoints(root) == []
    versions = {v for r, v in watcher.seen if r == run_id}
    assert versions <= set(range(0, 15)) and all(
        (root / f"v{v:06d}" / "manifest.json").is_file() for v in versions - {0}
    )
    # The restarted replica took work only once it served this run at the version the fleet had reached
    # when it was killed, or a newer one: the gateway brought it up first.
    assert replica_killed is not None
    killed_at, newest = replica_killed
    restarted = [t for t in watcher.timeline[local.generator_admin_urls[1]] if t[0] > killed_at]
    assert restarted, "the killed replica never answered again"
    admitted = [(r, v) for _, r, v, ok in restarted if ok]
    assert admitted and all(r == run_id and v >= newest for r, v in admitted), restarted[:10]


def record(ledger: Ledger, windows: list[tuple[str, float, float]]) -> None:
    """One row per fault: the groups appended from that fault until the next one, and their fates."""
    bounds = [("no fault (first step)", 0.0, 0.0), *windows]
    for i, (name, at, recovery) in enumerate(bounds):
        end = bounds[i + 1][1] if i + 1 < len(bounds) else float("inf")
        entries = [e for e in ledger.appended if at * 1000 <= entry_ms(e) < end * 1000]
        fates = Counter(ledger.fate(e) for e in entries)
        dropped = Counter(f.split(":", 1)[1] for f in fates.elements() if f.startswith("dropped:"))
        ROWS.append({
            "fault": name, "appended": len(entries), "trained": fates["trained"],
            "dropped": ", ".join(f"{r} {n}" for r, n in sorted(dropped.items())) or "0",
            "unread": fates["unread"], "lost": fates["lost"], "duplicated": fates["duplicated"],
            "recovery_s": f"{recovery:.1f}" if recovery else "-",
        })  # fmt: skip


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_with_the_trainer_stopped_producers_wait_at_the_stream_bound(stack: Stack):
    local = stack.local
    config = RunConfig.from_yaml(RUN).model_dump(mode="json")
    config["name"], config["trainer"]["max_steps"] = "backpressure", 2
    bound, workers = config["selfplay"]["max_stream_groups"], config["selfplay"]["concurrency"]
    created = httpx.post(f"{local.gateway_url}/v1/runs", json=config, headers=AUTH, timeout=30)
    run_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while served_run(local) != run_id:  # claimed, and its base model served: producers feed it from now on
        assert time.monotonic() < deadline, "no trainer took the run up"
        time.sleep(0.2)
    local.kill("trainer")  # nobody reads the stream any more
    try:
        deadline = time.monotonic() + 300
        while backlog(local, run_id) < bound:
            assert time.monotonic() < deadline, f"the stream never filled: {backlog(local, run_id)}"
            time.sleep(0.5)
        full, memory = backlog(local, run_id), rss_mb(local.procs["selfplay"].pid)
        throttled = throttled_count(local, run_id)
        time.sleep(20)
        assert full <= backlog(local, run_id) <= bound + workers  # a worker past the check may add one
        assert throttled_count(local, run_id) > throttled  # the workers are waiting, not producing
        assert rss_mb(local.procs["selfplay"].pid) < memory + 50
    finally:
        local.respawn("trainer")  # it claims back its running run and drains the stream
    wait_step(local, run_id, 0)  # the restarted trainer drains it


def backlog(local: LocalStack, run_id: str) -> int:
    from redis import Redis

    client = Redis.from_url(local.redis_url)
    try:
        groups = client.xinfo_groups(f"pop:run:{run_id}:episodes")
        lag = next((g.get("lag") for g in groups), None)
        return int(lag) if lag is not None else int(client.xlen(f"pop:run:{run_id}:episodes"))
    except Exception:
        return 0
    finally:
        client.close()


def throttled_count(local: LocalStack, run_id: str) -> float:
    from tests.integration.test_service_ops import samples, value

    text = httpx.get(f"http://127.0.0.1:{local.ports['selfplay']}/metrics", timeout=10).text
    return value(samples(text), "pop_selfplay_throttled_total", run_id=run_id) or 0.0


def served_run(local: LocalStack) -> str | None:
    try:
        return httpx.get(f"{local.generator_admin_url}/v1/policy", timeout=5).json().get("run_id")
    except (httpx.HTTPError, ValueError):
        return None
