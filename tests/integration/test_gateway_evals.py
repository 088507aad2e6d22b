"""``/v1/evals`` on the real stack pieces: evals queued through the gateway, run in its background
against the real vLLM generator (tiny model), graded by IFEval's checks or the real judge, stored in
SQL and read back; checkpoints are scored on the eval generator while the training one is untouched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.db import Database, EvalRecord
from shared.evaluation import EvalReport
from shared.evaluation.api import EvalCreate
from shared.schemas import utcnow
from shared.settings import GatewaySettings
from tests.integration.conftest import gateway_client
from tests.integration.test_gateway_api import assert_problem
from tests.integration.test_gateway_checkpoints import run_with_checkpoints
from tests.processes import builtin_judge

CONCISE = {
    "name": "concise",
    "description": "The answer has 1 to 6 words.",
    "check": {"type": "word_count", "min_words": 1, "max_words": 6},
}
QUICK = {"n": 2, "max_tokens": 12, "temperature": 1.0, "seed": 3}


@pytest.fixture(scope="module")
def judge_url(tiny_generator_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with builtin_judge(f"{tiny_generator_url}/v1", tmp_path_factory.mktemp("evals-judge")) as url:
        yield url


def eval_settings(database_url: str, redis_url: str, tmp_path: Path, **more: Any) -> GatewaySettings:
    (tmp_path / "evals").mkdir(exist_ok=True)
    return GatewaySettings(
        database_url=database_url,
        generator_url="http://127.0.0.1:9",  # the training generator is down: evals must not need it
        redis_url=redis_url,
        allowed_hosts=["127.0.0.1"],
        eval_dir=tmp_path / "evals",
        **more,
    )


@pytest.fixture
async def live(
    tmp_path: Path, redis_url: str, tiny_generator_url: str, tiny_generator_admin: str, judge_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = eval_settings(
        f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        redis_url,
        tmp_path,
        eval_generator_url=tiny_generator_admin,
        eval_generator_inference_url=tiny_generator_url,
        judge_url=judge_url,
    )
    async with gateway_client(settings) as client:
        yield client


async def finished(api: httpx.AsyncClient, location: str, timeout_s: float = 300) -> dict[str, Any]:
    for _ in range(int(timeout_s * 2)):
        body: dict[str, Any] = (await api.get(location)).json()
        if body["status"] in ("completed", "failed"):
            return body
        await asyncio.sleep(0.5)
    pytest.fail(f"{location} did not finish in {timeout_s}s")


async def test_an_ifeval_eval_of_an_endpoint_runs_in_the_background(live: httpx.AsyncClient, tiny_generator_url: str):
    body = {
        "set": {"format": "ifeval", "limit": 5},
        "targets": [{"label": "tiny", "base_url": f"{tiny_generator_url}/v1"}],
        "sampling": QUICK,
    }
    accepted = await live.post("/v1/evals", json=body)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "pending" and accepted.json()["reports"] == {}
    done = await finished(live, accepted.headers["Location"])
    assert done["status"] == "completed", done["error"]
    report = EvalReport.model_validate(done["reports"]["tiny"])
    assert report.answers == 10 and len(report.per_task) == 5 and report.by_criterion
    assert 0.0 <= report.reward.low <= report.reward.mean <= report.reward.high <= 1.0
    assert done["gain"] is None and done["run_id"] is None  # one target, no run
    assert done["started_at"] and done["finished_at"]


async def test_checkpoints_are_scored_on_the_eval_generator_side_by_side(
    live: httpx.AsyncClient, tiny_generator_admin: str, tiny_generator_checkpoints: Path
):
    run_id = await run_with_checkpoints(live, tiny_generator_checkpoints, versions=2)
    body = {
        "set": {"format": "heldout", "limit": 6},
        "targets": [
            {"kind": "checkpoint", "run_id": run_id, "version": 0, "label": "base"},
            {"kind": "checkpoint", "run_id": run_id, "version": 2},
        ],
        "criteria": [CONCISE],
        "sampling": QUICK,
    }
    accepted = await live.post("/v1/evals", json=body)
    assert accepted.status_code == 202, accepted.text
    done = await finished(live, accepted.headers["Location"])
    assert done["status"] == "completed", done["error"]
    assert list(done["reports"]) == ["base", "v2"] and done["run_id"] == run_id
    base, trained = (EvalReport.model_validate(done["reports"][k]) for k in ("base", "v2"))
    assert (base.version, trained.version) == (0, 2) and base.run_id == trained.run_id == run_id
    assert base.per_task.keys() == trained.per_task.keys() and len(base.per_task) == 6
    assert set(trained.by_criterion) == {"concise"}  # graded on the given criterion, by the judge
    assert done["gain"]["low"] <= done["gain"]["mean"] <= done["gain"]["high"]
    async with httpx.AsyncClient(timeout=10) as client:
        served = (await client.get(f"{tiny_generator_admin}/v1/policy")).json()
    assert (served["run_id"], served["version"]) == (run_id, 2)  # the eval generator, left on the last target

    listed = (await live.get("/v1/evals", params={"run_id": run_id})).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == done["id"]
    assert (await live.delete(f"/v1/runs/{run_id}")).status_code == 409  # still running: claimed by "t0"


async def test_a_failing_target_fails_its_eval_and_the_next_one_still_runs(
    live: httpx.AsyncClient, tiny_generator_url: str
):
    down = {
        "set": {"format": "ifeval", "limit": 2},
        "targets": [{"label": "down", "base_url": "http://127.0.0.1:9/v1"}],
    }
    up = {**down, "targets": [{"label": "up", "base_url": f"{tiny_generator_url}/v1"}], "sampling": QUICK}
    first = (await live.post("/v1/evals", json=down)).headers["Location"]
    second = (await live.post("/v1/evals", json=up)).headers["Location"]
    failed = await finished(live, first)
    assert failed["status"] == "failed" and failed["error"].startswith("target down:"), failed
    assert (await finished(live, second))["status"] == "completed"
    exposed = (await live.get("/metrics")).text
    assert 'pop_evals{status="failed"} 1.0' in exposed and 'pop_evals{status="completed"} 1.0' in exposed
    assert (await live.delete(first)).status_code == 204
    assert_problem(await live.get(first), 404)


async def test_an_eval_whose_gateway_died_is_taken_over_and_keeps_its_finished_targets(
    tmp_path: Path, redis_url: str, tiny_generator_url: str
):
    url = f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    request = EvalCreate.model_validate(
        {
            "set": {"format": "ifeval", "limit": 3},
            "targets": [
                {"label": "a", "base_url": f"{tiny_generator_url}/v1"},
                {"label": "b", "base_url": f"{tiny_generator_url}/v1"},
            ],
            "sampling": QUICK,
        }
    )
    settings = eval_settings(url, redis_url, tmp_path)
    db = Database(url)
    await db.create_schema()
    async with gateway_client(settings) as api:  # a first gateway scores target "a" ...
        first = await finished(
            api, (await api.post("/v1/evals", json=request.model_dump(mode="json"))).headers["Location"]
        )
    kept = first["reports"]["a"]
    async with db.session() as session:  # ... and died before "b": its eval is left running, heartbeat stale
        record = await session.get(EvalRecord, first["id"])
        assert record is not None
        record.status, record.worker, record.finished_at, record.gain = "running", "dead", None, None
        record.reports = {"a": kept}
        record.heartbeat_at = utcnow() - timedelta(minutes=5)
        await session.commit()
    await db.dispose()
    async with gateway_client(settings) as api:  # another gateway takes it over and scores only "b"
        done = await finished(api, f"/v1/evals/{first['id']}")
    assert done["status"] == "completed" and list(done["reports"]) == ["a", "b"]
    assert json.dumps(done["reports"]["a"], sort_keys=True) == json.dumps(kept, sort_keys=True)
    assert done["gain"] is not None


@pytest.fixture
async def strict(
    database_url: str, redis_url: str, tmp_path: Path, minimal_judge_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = eval_settings(database_url, redis_url, tmp_path, judge_url=minimal_judge_url)
    (tmp_path / "evals" / "broken.jsonl").write_text('{"key": 1, "prompt": "hi", "instruction_id_list": 3}\n')
    (tmp_path / "secret.jsonl").write_text("{}\n")
    async with gateway_client(settings) as client:
        yield client


def problem_at(response: httpx.Response, status: int, loc: list[str | int]) -> dict[str, Any]:
    body = assert_problem(response, status)
    errors = body.get("errors") or body.get("detail")
    assert isinstance(errors, list) and any(list(e["loc"])[-len(loc) :] == loc for e in errors), body
    return body


async def test_bad_eval_requests_are_refused_naming_the_field(strict: httpx.AsyncClient, minimal_judge_url: str):
    api = strict
    endpoint = {"label": "x", "base_url": "http://127.0.0.1:8000/v1"}
    ifeval = {"set": {"format": "ifeval"}, "targets": [endpoint]}
    problem_at(await api.post("/v1/evals", json={**ifeval, "set": {"format": "mmlu"}}), 422, ["set", "format"])
    for outside in ("../secret.jsonl", str(Path("/etc/hostname")), "none.jsonl"):
        elsewhere = {**ifeval, "set": {"format": "ifeval", "path": outside}}
        problem_at(await api.post("/v1/evals", json=elsewhere), 422, ["set", "path"])
    broken = await api.post("/v1/evals", json={**ifeval, "set": {"format": "ifeval", "path": "broken.jsonl"}})
    assert "broken.jsonl:1" in str(problem_at(broken, 422, ["set", "path"])["detail"])
    problem_at(await api.post("/v1/evals", json={**ifeval, "targets": []}), 422, ["targets"])
    twice = assert_problem(await api.post("/v1/evals", json={**ifeval, "targets": [endpoint, endpoint]}), 422)
    assert "repeated: x" in str(twice["detail"])
    far = {"label": "far", "base_url": "http://10.1.2.3/v1"}
    problem_at(await api.post("/v1/evals", json={**ifeval, "targets": [far]}), 422, ["targets", 0, "base_url"])
    checkpoint = {"kind": "checkpoint", "run_id": "nope", "version": 1}
    assert_problem(await api.post("/v1/evals", json={**ifeval, "targets": [checkpoint]}), 409)  # no eval generator
    problem_at(await api.post("/v1/evals", json={**ifeval, "judge": "Not A Name"}), 422, ["judge"])
    healthbench = {**ifeval, "set": {"format": "healthbench"}}
    problem_at(await api.post("/v1/evals", json={**healthbench, "judge": "unregistered"}), 422, ["judge"])
    heldout = {**ifeval, "set": {"format": "heldout"}}
    problem_at(await api.post("/v1/evals", json=heldout), 422, ["criteria"])
    problem_at(await api.post("/v1/evals", json={**heldout, "criteria": []}), 422, ["criteria"])
    problem_at(await api.post("/v1/evals", json={**heldout, "run_id": "nope", "criteria": [CONCISE]}), 422, ["run_id"])
    problem_at(await api.post("/v1/evals", json={**ifeval, "sampling": {"n": 0}}), 422, ["sampling", "n"])
    assert_problem(await api.get("/v1/evals/nope"), 404)
    assert_problem(await api.delete("/v1/evals/nope"), 404)
    problem_at(await api.get("/v1/evals", params={"status": "sleeping"}), 422, ["status", 0])
    assert (await api.get("/v1/evals")).json()["total"] == 0  # nothing refused was queued


async def test_checkpoint_targets_must_exist_and_their_generator_answer(
    database_url: str, redis_url: str, tmp_path: Path, tiny_generator_admin: str
):
    down = eval_settings(database_url, redis_url, tmp_path, eval_generator_url="http://127.0.0.1:9")
    async with gateway_client(down) as api:
        run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
        body = {"set": {"format": "ifeval"}, "targets": [{"kind": "checkpoint", "run_id": run_id, "version": 0}]}
        assert "compose: --profile eval" in str(assert_problem(await api.post("/v1/evals", json=body), 503)["detail"])
    settings = eval_settings(database_url, redis_url, tmp_path, eval_generator_url=tiny_generator_admin)
    async with gateway_client(settings) as api:
        body = {"set": {"format": "ifeval"}, "targets": [{"kind": "checkpoint", "run_id": "nope", "version": 0}]}
        problem_at(await api.post("/v1/evals", json=body), 422, ["targets", 0, "run_id"])
        body["targets"] = [{"kind": "checkpoint", "run_id": run_id, "version": 3}]
        problem_at(await api.post("/v1/evals", json=body), 422, ["targets", 0, "version"])
        body = {
            **body,
            "targets": [{"kind": "checkpoint", "run_id": run_id, "version": 0}],
            "sampling": {"max_tokens": 4},
        }
        accepted = await api.post("/v1/evals", json=body)
        assert accepted.status_code == 202 and accepted.json()["run_id"] == run_id
        assert (await api.delete(f"/v1/runs/{run_id}")).status_code == 204  # its evals go with it
        assert (await api.get("/v1/evals")).json()["total"] == 0
