"""The real vLLM generator (tiny model): /healthz answers while the engine does, and every hot-swap
attempt shows in vLLM's own /metrics, counted and timed by mode, outcome and phase, with the served version."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from shared.modeling import resolve_model
from tests.integration.test_service_ops import samples, value

PHASES = ("verify", "checksum", "pause", "reload", "finish", "drain")


async def scrape(client: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    reply = await client.get(f"{url}/metrics")
    assert reply.status_code == 200
    return samples(reply.text)


async def test_health_and_swap_metrics(tiny_generator_url: str, tiny_generator_admin: str):
    url, admin = tiny_generator_url, tiny_generator_admin
    ok, rejected = {"mode": "full", "outcome": "ok"}, {"mode": "full", "outcome": "rejected"}
    async with httpx.AsyncClient(timeout=180) as client:
        health = await client.get(f"{url}/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await client.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"

        before = await scrape(client, url)
        assert value(before, "pop_generator_policy_version") == 0
        assert "vllm:num_requests_running" in {name for name, _ in before}  # the same registry as vLLM's
        swapped = await client.post(f"{admin}/v1/policy/swap", json={"version": 0, "path": resolve_model("pop/tiny")})
        assert swapped.status_code == 200, swapped.text
        missing = await client.post(f"{admin}/v1/policy/swap", json={"version": 5, "path": "/nonexistent/ckpt"})
        assert missing.status_code == 400
        after = await scrape(client, url)
        assert "pop_generator_policy_version" in (await client.get(f"{admin}/metrics")).text  # the same registry

    def delta(name: str, labels: dict[str, str]) -> float:
        return (value(after, name, **labels) or 0.0) - (value(before, name, **labels) or 0.0)

    assert delta("pop_generator_swaps_total", ok) == 1
    assert delta("pop_generator_swap_seconds_count", ok) == 1
    assert delta("pop_generator_swap_seconds_sum", ok) > 0
    assert delta("pop_generator_swaps_total", rejected) == 1
    assert delta("pop_generator_swap_seconds_count", rejected) == 1
    assert value(after, "pop_generator_policy_version") == 0  # the refused swap left version 0 serving
    # Each phase of the good swap was timed; the refused one stopped at verify, before touching the weights.
    # Nothing drains any more: in-flight requests are paused in place ("keep") and resume on the new weights.
    phases = {p: delta("pop_generator_swap_phase_seconds_count", {"mode": "full", "phase": p}) for p in PHASES}
    assert phases == {"verify": 2, "checksum": 1, "pause": 1, "reload": 1, "finish": 1, "drain": 0}
    assert delta("pop_generator_swap_phase_seconds_sum", {"mode": "full", "phase": "reload"}) > 0


async def test_a_swap_outside_the_weight_roots_is_refused_and_the_old_weights_serve(
    tiny_generator_admin: str, tmp_path: Path
):
    outside = tmp_path / "copy"
    shutil.copytree(resolve_model("pop/tiny"), outside)  # a loadable model, in the wrong place
    async with httpx.AsyncClient(timeout=60) as client:
        before = (await client.get(f"{tiny_generator_admin}/v1/policy")).json()
        refused = await client.post(f"{tiny_generator_admin}/v1/policy/swap", json={"version": 9, "path": str(outside)})
        assert refused.status_code == 400 and refused.json()["title"] == "Checkpoint path refused"
        assert "outside the weight roots" in refused.json()["detail"]
        assert (await client.get(f"{tiny_generator_admin}/v1/policy")).json() == before
