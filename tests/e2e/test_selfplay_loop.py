"""The whole loop on real services: vLLM generator (tiny model), judge, gateway (SQL), producer,
trainer, Redis. Three updates, each hot-swapped into the generator without a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from cli.stack import LocalStack, StackOptions
from shared.config import RunConfig
from shared.files import sha256_file
from shared.schemas import EpisodeGroup
from shared.streams import GROUP, stream_key

pytestmark = pytest.mark.e2e

RUN_CONFIG = """
name: e2e
model: pop/tiny
selfplay: {group_size: 4, max_task_chars: 120, max_reference_chars: 120, max_answer_tokens: 24, concurrency: 2}
judge:
  extra_criteria:
    # the tiny model's 24-token answers have a median of ~13 words: this check splits groups
    - {name: brief, weight: 2, check: {type: word_count, min_words: 1, max_words: 13}}
trainer:
  algorithm: {name: dpo, beta: 0.1}
  learning_rate: 1.0e-3
  max_steps: 3
  groups_per_step: 2
  max_staleness: 0
"""
PROBE = [{"role": "user", "content": "Describe the heart in one sentence."}]


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("stack")
    options = StackOptions(
        home=home, model="pop/tiny", generator_dtype="float32", max_model_len=4096, redis_url=redis_url
    )
    with LocalStack(options) as running:
        yield running


def probe_logprobs(generator_url: str) -> list[float]:
    """Greedy log-probs of a fixed prompt: they move whenever the served weights do."""
    body = {"model": "policy", "messages": PROBE, "max_tokens": 8, "temperature": 0.0, "logprobs": True}
    reply = httpx.post(f"{generator_url}/v1/chat/completions", json=body, timeout=60).json()
    return [t["logprob"] for t in reply["choices"][0]["logprobs"]["content"]]


def watch_versions(generator_url: str, run_id: str, gateway_url: str, timeout_s: float) -> tuple[list[int], dict]:
    """Poll the served version until the run ends; returns the versions seen in order and the run."""
    seen: list[int] = []

    def observe() -> None:
        version = httpx.get(f"{generator_url}/v1/policy", timeout=10).json()["version"]
        if not seen or seen[-1] != version:
            seen.append(version)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        observe()
        run = httpx.get(f"{gateway_url}/v1/runs/{run_id}", timeout=10).json()
        if run["status"] in ("completed", "failed", "stopped"):
            observe()  # the last swap may land between the two reads above
            return seen, run
        time.sleep(0.2)
    pytest.fail(f"run {run_id} did not end in {timeout_s}s; logs in the stack's home")


async def stream_state(redis_url: str, run_id: str) -> tuple[list[EpisodeGroup], dict]:
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange(stream_key(run_id))
        groups = [EpisodeGroup.model_validate_json(fields[b"group"]) for _, fields in entries]
        info = next(g for g in await redis.xinfo_groups(stream_key(run_id)) if g["name"] in (GROUP, GROUP.encode()))
        return groups, info
    finally:
        await redis.aclose()


def test_three_updates_flow_through_stream_trainer_and_hot_swap(stack: LocalStack, redis_url: str):
    base_probe = probe_logprobs(stack.generator_url)
    config = RunConfig.from_yaml(RUN_CONFIG)
    created = httpx.post(f"{stack.gateway_url}/v1/runs", json=config.model_dump(mode="json"), timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    seen, run = watch_versions(stack.generator_url, run_id, stack.gateway_url, timeout_s=900)

    # The run completed three updates, each a new policy version.
    assert run["status"] == "completed", run.get("error")
    assert run["step"] == 3 and run["policy_version"] == 3
    assert [s["policy_version"] for s in run["steps"]] == [1, 2, 3]
    assert all(s["mean_score"] is not None and 0.0 <= s["mean_score"] <= 2.0 for s in run["steps"])

    # The generator's reported version advanced after each update, without a restart.
    assert seen[0] == 0 and seen[-1] == 3
    assert seen == sorted(seen) and {1, 2, 3} <= set(seen), seen
    assert stack.alive()["generator"]

    # Three complete checkpoints, each with a manifest whose checksums match the files.
    checkpoints = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/checkpoints", timeout=10).json()
    assert [c["version"] for c in checkpoints] == [1, 2, 3]
    for c in checkpoints:
        folder = Path(c["path"])
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["version"] == c["version"] and manifest["run_id"] == run_id
        assert manifest["files"]["model.safetensors"] == sha256_file(folder / "model.safetensors")

    # Episodes flowed through the stream; every delivered entry was acknowledged.
    groups, info = asyncio.run(stream_state(redis_url, run_id))
    assert info["pending"] == 0
    assert info["entries-read"] >= 6
    versions = {g.policy_version for g in groups}
    # max_staleness 0: update k+1 trains only on groups sampled by version k, after its swap.
    assert {0, 1, 2} <= versions, versions
    for g in groups:
        assert {e.policy_version for e in g.episodes} == {g.policy_version}
        for e in g.episodes:
            assert e.prompt_token_ids and e.completion.token_ids
            assert len(e.completion.logprobs) == len(e.completion.token_ids)
            names = {v.criterion for v in e.verdicts}
            assert "brief" in names or e.reward is None
        # the solver never saw the document: only the task reaches its prompt
        assert g.episodes[0].prompt_messages[-1].content == g.task.prompt

    # The served model really changed: the probe differs between versions, and a rollback restores it.
    latest_probe = probe_logprobs(stack.generator_url)
    assert latest_probe != base_probe
    probes = {3: latest_probe}
    for version in (1, 2, 0):
        swapped = httpx.post(
            f"{stack.gateway_url}/v1/generator/weights",
            json={"run_id": run_id, "version": version},
            timeout=120,
        )
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["served"]["version"] == version
        probes[version] = probe_logprobs(stack.generator_url)
    assert probes[0] == pytest.approx(base_probe, abs=1e-5)
    assert len({tuple(round(x, 6) for x in p) for p in probes.values()}) == 4


def test_swap_to_a_missing_checkpoint_keeps_serving(stack: LocalStack):
    before = httpx.get(f"{stack.generator_url}/v1/policy", timeout=10).json()
    bad = httpx.post(
        f"{stack.generator_url}/v1/policy/swap", json={"version": 99, "path": "/nonexistent/ckpt"}, timeout=60
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{stack.generator_url}/v1/policy", timeout=10).json()["version"] == before["version"]
    assert probe_logprobs(stack.generator_url)


def test_official_openai_client_unchanged(stack: LocalStack):
    from openai import OpenAI

    client = OpenAI(base_url=f"{stack.generator_url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="policy",
        messages=PROBE,
        max_tokens=6,
        temperature=0.0,
        logprobs=True,
        top_logprobs=2,  # type: ignore[arg-type]
    )
    choice = reply.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert all(t.logprob <= 0.0 and len(t.top_logprobs) == 2 for t in choice.logprobs.content)

    schema = {
        "type": "object",
        # bounded fields: a random model's reply must always close within max_tokens
        "properties": {"city": {"type": "string", "maxLength": 20}, "year": {"type": "integer", "enum": [1889, 1900]}},
        "required": ["city", "year"],
        "additionalProperties": False,
    }
    structured = client.chat.completions.create(
        model="policy",
        messages=PROBE,  # type: ignore[arg-type]
        max_tokens=128,
        temperature=0.0,
        response_format={"type": "json_schema", "json_schema": {"name": "fact", "schema": schema}},
    )
    data = json.loads(structured.choices[0].message.content or "", strict=False)
    assert set(data) == {"city", "year"} and isinstance(data["year"], int)
