"""Does the loop learn? The real policy (SmolLM2-135M-Instruct) on the real stack, trained on a
programmatic rubric, is evaluated on held-out tasks it never trained on, before and after.

The rubric (``configs/learning-check.yaml``) asks for a connective ("also", "however", ...) and for
5-24 words. It is graded exactly, so the reward is noise-free per answer; the base policy meets each
criterion in under a tenth of its answers. (So far the gain is the length criterion's: the report
gives each criterion's pass rate.) The held-out questions are not from
the training corpus; the answers are sampled with per-task seeds, so a fixed seed gives one draw per
set of weights. The assertion is on a paired bootstrap interval over tasks, so a lucky draw cannot
pass it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from cli.stack import LocalStack, StackOptions
from shared.clients.judge import JudgeClient
from shared.clients.llm import ChatClient
from shared.config import RunConfig
from shared.evaluation import EvalReport, evaluate, load_eval_tasks, paired_gain
from shared.schemas import EpisodeGroup, Rubric
from shared.streams import stream_key
from shared.tasktypes import load_task_types

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).parents[2] / "configs" / "learning-check.yaml"
EVAL_ANSWERS, EVAL_SEED = 8, 1234
MIN_GAIN = 0.3  # on the 0-2 reward scale: 15 more criteria met in a hundred


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    options = StackOptions(home=tmp_path_factory.mktemp("learning"), redis_url=redis_url)
    with LocalStack(options) as running:
        yield running


def held_out(stack: LocalStack, config: RunConfig) -> EvalReport:
    policy = httpx.get(f"{stack.generator_url}/v1/policy", timeout=10).json()

    async def run() -> EvalReport:
        llm = ChatClient(f"{stack.generator_url}/v1", "policy", max_parallel=4)
        judge = JudgeClient(stack.judge_url, timeout_s=120)
        try:
            return await evaluate(
                llm,
                judge,
                load_eval_tasks(),
                load_task_types(["long_form_qa"]),
                Rubric(criteria=config.judge.extra_criteria),
                n=EVAL_ANSWERS,
                max_tokens=config.selfplay.max_answer_tokens,
                temperature=config.selfplay.temperature,
                seed=EVAL_SEED,
                version=policy["version"],
                run_id=policy["run_id"],
            )
        finally:
            await asyncio.gather(llm.aclose(), judge.aclose())

    return asyncio.run(run())


async def stream_groups(redis_url: str, run_id: str) -> list[EpisodeGroup]:
    redis = Redis.from_url(redis_url)
    try:
        return [EpisodeGroup.model_validate_json(f[b"group"]) for _, f in await redis.xrange(stream_key(run_id))]
    finally:
        await redis.aclose()


def wait_finished(gateway_url: str, run_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = httpx.get(f"{gateway_url}/v1/runs/{run_id}", timeout=10).json()
        if run["status"] in ("completed", "failed", "stopped"):
            return run
        time.sleep(2.0)
    pytest.fail(f"run {run_id} did not end in {timeout_s}s")


def write_report(before: EvalReport, after: EvalReport, run: dict, seconds: float) -> str:
    """The curve, as markdown, into the test artifacts (``POP_TEST_ARTIFACTS``, else the run's home)."""
    gain = paired_gain(before, after, seed=EVAL_SEED)
    lines = [
        f"# Learning check: {run['config']['name']} ({seconds:.0f} s of training)",
        "",
        "| step | policy version | mean training reward | update seconds |",
        "|---|---|---|---|",
        *(
            f"| {s['step']} | {s['policy_version']} | {s['mean_score']:.3f} | {s['metrics']['update_seconds']:.0f} |"
            for s in run["steps"]
        ),
        "",
        "| held-out | version | mean reward | 95% interval | answers |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {r.version} | {r.reward.mean:.3f} | [{r.reward.low:.3f}, {r.reward.high:.3f}] | {r.answers} |"
            for label, r in (("before", before), ("after", after))
        ),
        "",
        f"Paired gain over {len(after.per_task)} tasks: {gain.mean:+.3f} [{gain.low:+.3f}, {gain.high:+.3f}]",
        "",
        "| criterion | met before | met after |",
        "|---|---|---|",
        *(f"| {c} | {before.by_criterion.get(c, 0.0):.1%} | {share:.1%} |" for c, share in after.by_criterion.items()),
    ]
    text = "\n".join(lines) + "\n"
    folder = Path(os.environ.get("POP_TEST_ARTIFACTS", ".pop/test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "learning-check.md").write_text(text)
    (folder / "learning-check.json").write_text(
        json.dumps({"before": before.model_dump(), "after": after.model_dump(), "steps": run["steps"]}, indent=1)
    )
    return text


@pytest.mark.timeout(1800)  # about 11 minutes here: 2 held-out evaluations and 8 updates of a real model
def test_training_on_a_programmatic_rubric_raises_held_out_reward(stack: LocalStack):
    config = RunConfig.from_file(CONFIG)
    before = held_out(stack, config)
    assert before.version == 0 and before.invalid == 0

    started = time.monotonic()
    created = httpx.post(f"{stack.gateway_url}/v1/runs", json=config.model_dump(mode="json"), timeout=30)
    assert created.status_code == 201, created.text
    run = wait_finished(stack.gateway_url, created.json()["id"], timeout_s=1200)
    seconds = time.monotonic() - started
    assert run["status"] == "completed", run.get("error")

    # Every trained group was graded by the fixed rubric alone, exactly, with no rubric writer.
    groups = asyncio.run(stream_groups(stack.redis_url, run["id"]))
    assert groups and all(g.task.rubric is not None for g in groups)
    names = [c.name for c in config.judge.extra_criteria]
    assert all([c.name for c in g.task.rubric.criteria] == names for g in groups if g.task.rubric)
    assert all(v.backend.startswith("programmatic") for g in groups for e in g.episodes for v in e.verdicts)

    after = held_out(stack, config)
    assert (after.version, after.run_id) == (config.trainer.max_steps, run["id"])
    print("\n" + write_report(before, after, run, seconds))

    gain = paired_gain(before, after, seed=EVAL_SEED)
    assert gain.low > 0, f"no held-out gain beyond noise: {gain}"
    assert gain.mean >= MIN_GAIN, f"held-out gain {gain.mean:.3f} under {MIN_GAIN}"
