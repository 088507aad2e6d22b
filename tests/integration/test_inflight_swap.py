"""The real vLLM generator (tiny model) swaps full weights with requests in flight: none fails or
waits for a drain, each response says which versions wrote it, and the prefix cache, kept across the
swap, never serves a new version blocks that older weights computed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from services.generator.server import RUN_HEADER, START_HEADER, VERSION_HEADER
from shared.clients.llm import ChatClient
from shared.modeling import resolve_model
from shared.schemas import ChatMessage
from tests.integration.checkpoints import perturbed_tiny
from tests.integration.test_service_ops import samples
from tests.processes import Generator

LONG = {"model": "policy", "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 800,
        "temperature": 1.0, "ignore_eos": True}  # fmt: skip
PROMPT = " ".join(f"organ {i} heart lung liver kidney" for i in range(60))  # several full KV blocks
GREEDY = {"model": "policy", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8,
          "temperature": 0.0, "logprobs": True}  # fmt: skip
Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, url: str) -> Metrics:
    return samples((await client.get(f"{url}/metrics")).raise_for_status().text)


def total(parsed: Metrics, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels`` (vLLM adds its own)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in parsed.items() if n == name and wanted <= have)


async def swap(client: httpx.AsyncClient, admin: str, version: int, path: Path | str, run_id: str | None) -> None:
    body: dict[str, Any] = {"version": version, "path": str(path), "run_id": run_id}
    reply = await client.post(f"{admin}/v1/policy/swap", json=body)
    assert reply.status_code == 200, reply.text


async def test_requests_in_flight_during_a_swap_finish_on_the_new_weights(
    tiny_generator_ports: Generator, tiny_generator_checkpoints: Path
):
    url, admin, run_id = tiny_generator_ports.url, tiny_generator_ports.admin, f"inflight-{uuid4().hex[:8]}"
    v1 = await asyncio.to_thread(perturbed_tiny, tiny_generator_checkpoints / run_id / "v000001", 1)
    async with httpx.AsyncClient(timeout=600) as client:
        before = await scrape(client, url)
        try:
            requests = [asyncio.create_task(client.post(f"{url}/v1/chat/completions", json=LONG)) for _ in range(8)]
            # The producer's own client: each answer comes back tagged with the versions its headers name.
            policy = ChatClient(f"{url}/v1", "policy")
            messages = [ChatMessage(role="user", content="Tell a long story.")]
            sampled = asyncio.create_task(policy.sample(messages, n=2, max_tokens=800, temperature=1.0))
            deadline = time.monotonic() + 60
            while total(await scrape(client, url), "vllm:num_requests_running") < 10:  # all admitted, decoding
                assert time.monotonic() < deadline and not any(r.done() for r in requests), "requests never ran"
                await asyncio.sleep(0.1)
            started = time.perf_counter()
            await swap(client, admin, 1, v1, run_id)
            swap_seconds = time.perf_counter() - started
            replies = await asyncio.gather(*requests)
            group = await sampled
            await policy.aclose()
            after = await scrape(client, url)
            latest = await client.post(f"{url}/v1/chat/completions", json={**LONG, "max_tokens": 4})
        finally:
            await swap(client, admin, 0, resolve_model("pop/tiny"), None)

    assert [r.status_code for r in replies] == [200] * 8  # none failed, none was aborted
    assert all(r.json()["usage"]["completion_tokens"] == LONG["max_tokens"] for r in replies)
    spans = [(int(r.headers[START_HEADER]), int(r.headers[VERSION_HEADER])) for r in replies]
    assert (0, 1) in spans and all(span in ((0, 0), (0, 1), (1, 1)) for span in spans), spans
    # Started on v0, finished on v0 or v1: kept, each answer with the versions that wrote it.
    assert [c.policy_version_start for c in group.completions] == [0, 0]
    assert all(c.policy_version in (0, 1) for c in group.completions), group.completions
    assert group.policy_run in (None, run_id)
    assert (latest.headers[START_HEADER], latest.headers[VERSION_HEADER], latest.headers[RUN_HEADER]) == (
        "1", "1", run_id,
    )  # fmt: skip

    def delta(phase: str) -> tuple[float, float]:
        name = "pop_generator_swap_phase_seconds"
        labels = {"mode": "full", "phase": phase}
        return (
            total(after, f"{name}_count", **labels) - total(before, f"{name}_count", **labels),
            total(after, f"{name}_sum", **labels) - total(before, f"{name}_sum", **labels),
        )

    assert delta("drain") == (0, 0)  # nothing waited for the 8 requests to finish
    pauses, paused_s = delta("pause")
    assert pauses == 1 and paused_s < 1.0  # freezing them took no time of their own
    assert swap_seconds < 30


async def answer(client: httpx.AsyncClient, url: str, **more: Any) -> list[float]:
    reply = (await client.post(f"{url}/v1/chat/completions", json={**GREEDY, **more})).raise_for_status().json()
    return [t["logprob"] for t in reply["choices"][0]["logprobs"]["content"]]


async def test_after_a_swap_the_kept_prefix_cache_never_answers_with_older_weights(
    tiny_generator_ports: Generator, tiny_generator_checkpoints: Path
):
    url, admin, run_id = tiny_generator_ports.url, tiny_generator_ports.admin, f"salted-{uuid4().hex[:8]}"
    v1 = await asyncio.to_thread(perturbed_tiny, tiny_generator_checkpoints / run_id / "v000001", 2)
    async with httpx.AsyncClient(timeout=300) as client:
        base = await answer(client, url)
        hits = total(await scrape(client, url), "vllm:prefix_cache_hits_total")
        assert await answer(client, url) == pytest.approx(base, abs=1e-4)
        # The cache is on (so this test could fail): the same prompt again was served from its blocks.
        assert total(await scrape(client, url), "vllm:prefix_cache_hits_total") > hits
        try:
            await swap(client, admin, 1, v1, run_id)
            served = await answer(client, url)
            fresh = await answer(client, url, cache_salt=f"fresh-{uuid4().hex}")  # no block is shared with any
            await swap(client, admin, 0, resolve_model("pop/tiny"), None)
            back = await answer(client, url)
        finally:
            await swap(client, admin, 0, resolve_model("pop/tiny"), None)
    assert served == pytest.approx(fresh, abs=1e-4)  # v1's own answer, not one read off v0's cached blocks
    assert served != pytest.approx(base, abs=1e-2)
    assert back == pytest.approx(base, abs=1e-4)  # the rollback goes the same way
