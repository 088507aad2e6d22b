"""A generator fleet on real services: two vLLM replicas of the tiny model behind every client (the fault
suite's stack, shared to spare CI a second fleet's start; it runs after the faults, which leave every
service restarted and the killed replica brought back).

One run of six updates: every swap reaches both replicas (the gateway fans it out; each replica's own
counters and served version are read back), producers and the judge spread their requests over both,
requests in flight during the swaps complete (none fails: the swaps pause with ``mode="keep"``, they
never drain), and every episode carries the version its own answer was made with, read from the
replica's response headers: a group whose answers span a swap is kept, not dropped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from cli.stack import LocalStack
from shared.config import RunConfig
from shared.modeling import resolve_model
from shared.schemas import EpisodeGroup
from tests.e2e.test_learning import stream_groups
from tests.faults.conftest import AUTH, Stack
from tests.integration.test_service_ops import samples, value

pytestmark = pytest.mark.faults
STEPS = 6
RUN_CONFIG = f"""
name: fleet
model: pop/tiny
selfplay:
  {{group_size: 4, max_task_chars: 120, max_reference_chars: 120, max_answer_tokens: 24, concurrency: 2,
    task_mix: {{long_form_qa: 1}}}}
judge:
  extra_criteria:
    - {{name: brief, weight: 2, check: {{type: word_count, min_words: 1, max_words: 13}}}}
trainer: {{algorithm: {{name: dpo, beta: 0.1}}, learning_rate: 1.0e-3, max_steps: {STEPS}, groups_per_step: 1,
          max_staleness: 1}}
"""


@pytest.fixture(scope="module")
def local(stack: Stack) -> LocalStack:
    return stack.local


@dataclass(eq=False)
class Traffic(threading.Thread):
    """Chat requests to every replica back to back, all through the run's swaps: none may fail."""

    urls: list[str]
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    spans: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        body = {"model": "policy", "messages": [{"role": "user", "content": "Name a river."}], "max_tokens": 48}
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                for url in self.urls:
                    try:
                        reply = client.post(f"{url}/v1/chat/completions", json=body)
                    except httpx.HTTPError as exc:
                        self.failed.append(f"{url}: {exc!r}")
                        continue
                    if reply.status_code != 200:
                        self.failed.append(f"{url}: {reply.status_code} {reply.text[:200]}")
                        continue
                    self.answered += 1
                    self.spans += reply.headers["x-policy-version-start"] != reply.headers["x-policy-version"]


@dataclass
class FleetRun:
    run: dict[str, Any]
    groups: list[EpisodeGroup]
    traffic: Traffic
    replicas: list[dict[str, Any]]
    synthesis: dict[str, Any]


@pytest.fixture(scope="module")
def fleet_run(local: LocalStack, stack: Stack) -> FleetRun:
    traffic = Traffic(local.generator_urls)
    traffic.start()
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    created = httpx.post(f"{local.gateway_url}/v1/runs", json=config, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + 1200
    while (run := httpx.get(f"{local.gateway_url}/v1/runs/{run_id}", timeout=10).json())["status"] in (
        "pending",
        "running",
    ):
        assert time.monotonic() < deadline, f"run {run_id} did not end; logs in {local.logs}"
        time.sleep(0.5)
    traffic.stop.set()
    traffic.join(timeout=150)
    replicas = httpx.get(f"{local.gateway_url}/v1/generator", timeout=30).json()["replicas"]
    synthesis = httpx.get(f"{local.gateway_url}/v1/runs/{run_id}/synthesis", timeout=10).json()
    return FleetRun(run, asyncio.run(stream_groups(stack.redis.url, run_id)), traffic, replicas, synthesis)


def test_every_swap_reaches_every_replica(local: LocalStack, fleet_run: FleetRun):
    run = fleet_run.run
    assert run["status"] == "completed", run.get("error")
    assert [s["step"] for s in run["steps"]] == list(range(1, STEPS + 1))
    assert len(fleet_run.replicas) == 2
    for replica in fleet_run.replicas:
        assert replica["served"]["run_id"] == run["id"] and replica["served"]["version"] == STEPS, replica
        assert replica["admitted"] and replica["current"] and replica["ready"], replica
    # Each replica loaded v0 (the run's base) and every one of its versions: its own swap counter says so.
    for admin in local.generator_admin_urls:
        parsed = samples(httpx.get(f"{admin}/metrics", timeout=10).text)
        ok = value(parsed, "pop_generator_swaps_total", mode="full", outcome="ok") or 0.0
        assert ok >= STEPS + 1, (admin, ok)  # also counts the fault run's swaps: at least these


def test_requests_in_flight_during_the_swaps_all_complete(fleet_run: FleetRun):
    traffic = fleet_run.traffic
    assert traffic.failed == [], traffic.failed[:5]
    assert traffic.answered >= 2 * STEPS


def test_each_episode_carries_its_own_answers_version_and_spanning_groups_are_kept(fleet_run: FleetRun):
    assert fleet_run.groups, "no group reached the stream"
    for group in fleet_run.groups:
        versions = [e.policy_version for e in group.episodes]
        assert group.policy_version == min(versions)
        for episode in group.episodes:
            c = episode.completion
            assert c.policy_version is not None and c.policy_version_start == episode.policy_version
            assert c.policy_version >= c.policy_version_start
    filtered = fleet_run.synthesis.get("filtered") or {}
    assert filtered.get("mixed_policy_version", 0) == 0 and filtered.get("untagged_policy_version", 0) == 0
    trained = [s["metrics"] for s in fleet_run.run["steps"]]
    spanning = sum(m.get("groups_spanning_swap", 0.0) for m in trained)
    print(f"groups spanning a swap, trained: {spanning:g}; traffic answers spanning a swap: {fleet_run.traffic.spans}")


def test_a_run_of_another_architecture_is_refused_at_creation(local: LocalStack, fleet_run: FleetRun):
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["model"] = resolve_model("pop/smollm2-135m-instruct")
    refused = httpx.post(f"{local.gateway_url}/v1/runs", json=config, headers=AUTH, timeout=30)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "SmolLM2" in detail and "tiny" in detail, detail


def test_the_inference_ports_refuse_the_admin_routes(local: LocalStack):
    for url in local.generator_urls:
        assert httpx.get(f"{url}/v1/policy", timeout=10).status_code == 404
        assert httpx.post(f"{url}/v1/policy/swap", json={}, timeout=10).status_code == 404
    for admin in local.generator_admin_urls:
        assert httpx.get(f"{admin}/v1/policy", timeout=10).status_code == 200
