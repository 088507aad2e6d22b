"""Does the loop learn? The real policy (SmolLM2-135M-Instruct) on the real stack, trained on a
programmatic rubric, is evaluated on held-out tasks it never trained on, before and after, through
the gateway's ``POST /v1/evals`` (both checkpoints swapped onto the eval generator, side by side).

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
from shared.config import RunConfig
from shared.evaluation import EvalReport, Interval, paired_gain
from shared.schemas import EpisodeGroup
from shared.streams import stream_key

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).parents[2] / "configs" / "learning-check.yaml"
EVAL_ANSWERS, EVAL_SEED = 8, 1234
MIN_GAIN = 0.3  # on the 0-2 reward scale: 15 more criteria met in a hundred


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    options = StackOptions(home=tmp_path_factory.mktemp("learning"), redis_url=redis_url, eval_generator=True)
    with LocalStack(options) as running:
        yield running


def held_out_eval(stack: LocalStack, config: RunConfig, run_id: str) -> dict:
    """Base and trained policy side by side through ``POST /v1/evals``: both checkpoints are swapped onto
    the eval generator and graded by the run's own criteria (the eval's default) on held-out questions
    of the run's task type."""
    body = {
        "set": {"format": "heldout"},
        "targets": [
            {"kind": "checkpoint", "run_id": run_id, "version": 0, "label": "before"},
            {"kind": "checkpoint", "run_id": run_id, "version": config.trainer.max_steps, "label": "after"},
        ],
        "sampling": {
            "n": EVAL_ANSWERS,
            "max_tokens": config.selfplay.max_answer_tokens,
            "temperature": config.selfplay.temperature,
            "seed": EVAL_SEED,
        },
    }
    accepted = httpx.post(f"{stack.gateway_url}/v1/evals", json=body, timeout=60)
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        done = httpx.get(f"{stack.gateway_url}{accepted.headers['Location']}", timeout=10).json()
        if done["status"] in ("completed", "failed"):
            assert done["status"] == "completed", done["error"]
            assert done["request"]["criteria"] == [c.model_dump(mode="json") for c in config.judge.extra_criteria]
            return dict(done)
        time.sleep(5.0)
    pytest.fail("the held-out eval did not finish in 900 s")


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


@pytest.mark.timeout(1800)  # about 12 minutes here: 8 updates of a real model, then 2 held-out evaluations
def test_training_on_a_programmatic_rubric_raises_held_out_reward(stack: LocalStack):
    config = RunConfig.from_file(CONFIG)
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

    evaluated = held_out_eval(stack, config, run["id"])
    before, after = (EvalReport.model_validate(evaluated["reports"][k]) for k in ("before", "after"))
    assert before.invalid == 0 and (before.version, after.version) == (0, config.trainer.max_steps)
    assert before.run_id == after.run_id == run["id"]
    print("\n" + write_report(before, after, run, seconds))
    served = httpx.get(f"{stack.generator_admin_url}/v1/policy", timeout=10).json()
    assert served["version"] == config.trainer.max_steps  # the training generator was left alone

    gain = Interval.model_validate(evaluated["gain"])
    assert gain == paired_gain(before, after, seed=EVAL_SEED)
    assert gain.low > 0, f"no held-out gain beyond noise: {gain}"
    assert gain.mean >= MIN_GAIN, f"held-out gain {gain.mean:.3f} under {MIN_GAIN}"
