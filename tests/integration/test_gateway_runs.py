"""Run control over the REST API on real SQL and Redis: filters, pagination, pause / resume / delete,
Idempotency-Key, metric series and sample episodes, with every error answer they document."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from services.gateway.app import create_app
from shared.settings import GatewaySettings
from shared.streams import EpisodeStream, stream_key
from shared.synthesis import SynthesisLedger, ledger_key
from tests.integration.conftest import gateway_client
from tests.integration.samples import group
from tests.integration.test_gateway_api import assert_problem, step_report

TINY = {"model": "pop/tiny"}


async def new_run(api: httpx.AsyncClient, **config: object) -> str:
    created = await api.post("/v1/runs", json={**TINY, **config})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def claimed_run(api: httpx.AsyncClient, trainer: str = "t0", **config: object) -> str:
    run_id = await new_run(api, **config)
    claimed = await api.post("/v1/runs/claim", json={"trainer": trainer})
    assert claimed.json()["id"] == run_id
    return run_id


async def test_list_filters_by_status_and_name_and_pages(api: httpx.AsyncClient):
    ids = [await new_run(api, name=f"sweep-{i}") for i in range(5)]
    other = await new_run(api, name="baseline")
    await api.post(f"/v1/runs/{ids[0]}/stop")
    await api.post(f"/v1/runs/{other}/pause")

    page = (await api.get("/v1/runs", params={"name": "sweep", "limit": 2})).json()
    assert page["total"] == 5 and [r["id"] for r in page["items"]] == ids[::-1][:2]  # newest first
    rest = (await api.get("/v1/runs", params={"name": "sweep", "limit": 2, "offset": 4})).json()
    assert [r["id"] for r in rest["items"]] == [ids[0]]
    both = (await api.get("/v1/runs", params=[("status", "stopped"), ("status", "paused")])).json()
    assert both["total"] == 2 and {r["id"] for r in both["items"]} == {ids[0], other}
    assert (await api.get("/v1/runs", params={"name": "50%_"})).json()["total"] == 0  # wildcards are literal

    assert "status" in str(assert_problem(await api.get("/v1/runs", params={"status": "sleeping"}), 422)["detail"])
    assert_problem(await api.get("/v1/runs", params={"offset": -1}), 422)
    assert_problem(await api.get("/v1/runs", params={"limit": 501}), 422)


async def test_pause_resume_hands_the_run_back_to_any_trainer(api: httpx.AsyncClient):
    run_id = await claimed_run(api, "t0")
    paused = await api.post(f"/v1/runs/{run_id}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    # The trainer's update in hand when the pause came is still recorded...
    recorded = await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 1, 0.5))
    assert recorded.status_code == 200 and recorded.json()["status"] == "paused"
    # ...but nobody claims a paused run, producers see it as not running.
    assert (await api.post("/v1/runs/claim", json={"trainer": "t0"})).status_code == 204
    assert (await api.get("/v1/runs", params={"status": "running"})).json()["total"] == 0
    assert_problem(await api.post(f"/v1/runs/{run_id}/pause"), 409)

    resumed = (await api.post(f"/v1/runs/{run_id}/resume")).json()
    assert resumed["status"] == "pending" and resumed["trainer"] is None and resumed["step"] == 1
    claimed = (await api.post("/v1/runs/claim", json={"trainer": "t1"})).json()
    assert claimed["id"] == run_id and claimed["trainer"] == "t1" and claimed["step"] == 1
    assert_problem(await api.post(f"/v1/runs/{run_id}/resume"), 409)  # running, not paused

    pending = await new_run(api)
    assert (await api.post(f"/v1/runs/{pending}/pause")).json()["status"] == "paused"
    await api.post(f"/v1/runs/{run_id}/stop")
    problem = assert_problem(await api.post(f"/v1/runs/{run_id}/pause"), 409)
    assert "stopped" in str(problem["detail"])
    for action in ("pause", "resume", "stop"):
        assert_problem(await api.post(f"/v1/runs/nope/{action}"), 404)


async def test_delete_forgets_rows_and_redis_state(api: httpx.AsyncClient, redis: Redis):
    run_id = await claimed_run(api)
    await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 1, 0.5))
    await EpisodeStream(redis, run_id).append(group(run_id, 0))
    await SynthesisLedger(redis, run_id).next_draw()
    problem = assert_problem(await api.delete(f"/v1/runs/{run_id}"), 409)
    assert "pause" in str(problem["detail"]) or "running" in str(problem["detail"])

    await api.post(f"/v1/runs/{run_id}/stop")
    deleted = await api.delete(f"/v1/runs/{run_id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await api.get(f"/v1/runs/{run_id}"), 404)
    assert_problem(await api.get(f"/v1/runs/{run_id}/checkpoints"), 404)
    assert not await redis.exists(stream_key(run_id), ledger_key(run_id))
    assert_problem(await api.delete(f"/v1/runs/{run_id}"), 404)


async def test_idempotency_key_replays_the_first_run(api: httpx.AsyncClient):
    headers = {"Idempotency-Key": "launch-42"}
    first = await api.post("/v1/runs", json={**TINY, "name": "once"}, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = await api.post("/v1/runs", json={**TINY, "name": "once"}, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    # The same config in YAML is the same request.
    yaml_again = await api.post(
        "/v1/runs", content="model: pop/tiny\nname: once\n", headers={**headers, "content-type": "application/yaml"}
    )
    assert yaml_again.status_code == 200 and yaml_again.json()["id"] == first.json()["id"]
    assert (await api.get("/v1/runs")).json()["total"] == 1

    other = assert_problem(await api.post("/v1/runs", json={**TINY, "name": "twice"}, headers=headers), 422)
    assert other["title"] == "Idempotency-Key reused" and other["run_id"] == first.json()["id"]
    assert_problem(await api.post("/v1/runs", json=TINY, headers={"Idempotency-Key": ""}), 422)
    assert_problem(await api.post("/v1/runs", json=TINY, headers={"Idempotency-Key": "k" * 256}), 422)
    fresh = await api.post("/v1/runs", json={**TINY, "name": "twice"}, headers={"Idempotency-Key": "launch-43"})
    assert fresh.status_code == 201 and (await api.get("/v1/runs")).json()["total"] == 2


async def test_run_config_naming_a_judge_that_is_not_registered_is_refused(api: httpx.AsyncClient):
    problem = assert_problem(await api.post("/v1/runs", json={**TINY, "judge": {"name": "ghost"}}), 422)
    assert problem["errors"][0]["loc"] == ["judge", "name"] and "ghost" in str(problem["detail"])


async def test_a_model_that_does_not_resolve_is_refused_with_why(api: httpx.AsyncClient):
    """Checked at launch from the Hugging Face cache (offline here), not at the trainer's first swap."""
    absent = assert_problem(await api.post("/v1/runs", json={"model": "org/absent", "model_revision": "v1"}), 422)
    assert absent["title"] == "Model unusable" and absent["errors"][0]["loc"] == ["model"]
    assert "model 'org/absent' at revision 'v1': not in the Hugging Face cache" in str(absent["detail"])
    assert "HF_HUB_OFFLINE" in str(absent["detail"])
    pinned = assert_problem(await api.post("/v1/runs", json={**TINY, "model_revision": "v2"}), 422)
    assert pinned["errors"][0]["loc"] == ["model_revision"]
    unknown = assert_problem(await api.post("/v1/runs", json={"model": "pop/nope"}), 422)
    assert "pop/tiny" in str(unknown["detail"])  # the aliases there are
    assert (await api.get("/v1/runs")).json()["total"] == 0


async def test_metric_series_for_charts(api: httpx.AsyncClient):
    run_id = await claimed_run(api)
    for step, score in [(1, 0.5), (2, 1.0), (3, 1.5)]:
        report = step_report(run_id, step, score)
        report["metrics"] = {"loss": 1.0 / step, "reward_mean/long_form_qa": score, "rubric_met_rate": step / 10}
        await api.post(f"/v1/runs/{run_id}/steps", json=report)

    series = (await api.get(f"/v1/runs/{run_id}/metrics")).json()
    assert series["names"] == ["loss", "reward_mean/long_form_qa", "rubric_met_rate"]
    assert [p["step"] for p in series["points"]] == [1, 2, 3]
    assert [p["mean_score"] for p in series["points"]] == [0.5, 1.0, 1.5]
    assert series["points"][2]["values"]["rubric_met_rate"] == pytest.approx(0.3)
    picked = (await api.get(f"/v1/runs/{run_id}/metrics", params={"name": "loss", "after_step": 1})).json()
    assert [p["step"] for p in picked["points"]] == [2, 3]
    assert [p["values"] for p in picked["points"]] == [{"loss": 0.5}, {"loss": pytest.approx(1 / 3)}]

    assert_problem(await api.get("/v1/runs/nope/metrics"), 404)
    assert_problem(await api.get(f"/v1/runs/{run_id}/metrics", params={"after_step": -1}), 422)


async def test_sample_episodes_page_newest_first(api: httpx.AsyncClient, redis: Redis):
    run_id = await new_run(api)
    stream = EpisodeStream(redis, run_id)
    for i in range(5):
        await stream.append(group(run_id, i))
    await redis.xadd(stream_key(run_id), {"group": b"not json"})  # a malformed entry is skipped, not a 500

    first = (await api.get(f"/v1/runs/{run_id}/episodes", params={"limit": 3})).json()
    assert first["total"] == 6
    assert [s["group"]["task"]["prompt"] for s in first["items"]] == ["Question 4?", "Question 3?"]
    episode = first["items"][0]["group"]["episodes"][1]
    assert episode["completion"]["text"] == "answer 4.1" and episode["reward"] == 2.0
    assert episode["verdicts"][0] == {**episode["verdicts"][0], "criterion": "accurate", "rating": 2}
    assert episode["completion"]["token_ids"] == [] and episode["prompt_token_ids"] == []  # for trainers only
    second = (await api.get(f"/v1/runs/{run_id}/episodes", params={"limit": 3, "before": first["next_cursor"]})).json()
    assert [s["group"]["task"]["prompt"] for s in second["items"]] == ["Question 2?", "Question 1?", "Question 0?"]
    assert second["next_cursor"] is None

    assert (await api.get(f"/v1/runs/{await new_run(api)}/episodes")).json() == {
        "items": [],
        "next_cursor": None,
        "total": 0,
    }
    assert_problem(await api.get("/v1/runs/nope/episodes"), 404)
    assert_problem(await api.get(f"/v1/runs/{run_id}/episodes", params={"before": "yesterday"}), 422)
    assert_problem(await api.get(f"/v1/runs/{run_id}/episodes", params={"limit": 101}), 422)


async def test_trainer_endpoints_refuse_bad_reports(api: httpx.AsyncClient):
    assert_problem(await api.post("/v1/runs/claim", json={"trainer": ""}), 422)
    assert_problem(await api.post("/v1/runs/nope/steps", json=step_report("nope", 1, 0.5)), 404)
    run_id = await claimed_run(api)
    bad = step_report(run_id, 1, 0.5)
    del bad["manifest"]
    assert "manifest" in str(assert_problem(await api.post(f"/v1/runs/{run_id}/steps", json=bad), 422)["detail"])
    not_final = assert_problem(await api.post(f"/v1/runs/{run_id}/finish", json={"status": "paused"}), 422)
    assert not_final["title"] == "Not a final status"
    assert_problem(await api.post("/v1/runs/nope/finish", json={"status": "failed"}), 404)


async def test_a_trainer_that_resumed_from_an_older_state_rewinds_the_run(api: httpx.AsyncClient):
    """resume_every > 1: steps after the newest resumable state were reported; the resumed trainer takes
    the run back to that state's step, forgetting the later steps and their checkpoints, then reports
    them again (retrained from the same, never acknowledged, stream entries)."""
    run_id = await claimed_run(api)
    for step in (1, 2, 3):
        assert (await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, step, 0.1))).status_code == 200
    rewound = await api.post(f"/v1/runs/{run_id}/rewind", json={"step": 1, "policy_version": 1})
    assert rewound.status_code == 200, rewound.text
    assert (rewound.json()["step"], rewound.json()["policy_version"]) == (1, 1)
    assert [s["step"] for s in rewound.json()["steps"]] == [1]
    assert [c["version"] for c in (await api.get(f"/v1/runs/{run_id}/checkpoints")).json()] == [1]
    again = await api.post(f"/v1/runs/{run_id}/rewind", json={"step": 1, "policy_version": 1})  # a retry
    assert again.status_code == 200 and again.json()["step"] == 1
    ahead = assert_problem(await api.post(f"/v1/runs/{run_id}/rewind", json={"step": 2, "policy_version": 2}), 409)
    assert ahead["title"] == "Not a rewind"
    assert_problem(await api.post(f"/v1/runs/{run_id}/rewind", json={"step": -1, "policy_version": 0}), 422)
    retrained = await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 2, 0.4))
    assert retrained.status_code == 200 and [s["step"] for s in retrained.json()["steps"]] == [1, 2]
    await api.post(f"/v1/runs/{run_id}/finish", json={"status": "completed"})
    assert_problem(await api.post(f"/v1/runs/{run_id}/rewind", json={"step": 0, "policy_version": 0}), 409)
    assert_problem(await api.post("/v1/runs/nope/rewind", json={"step": 0, "policy_version": 0}), 404)


async def test_the_deployments_run_defaults_fill_what_a_config_leaves_out(
    database_url: str, redis_url: str, tmp_path: Path
):
    defaults = tmp_path / "run-defaults.yaml"
    defaults.write_text(
        "model: pop/tiny\nselfplay: {group_size: 6, task_mix: {long_form_qa: 1, creative_writing: 1}}\n"
        "trainer: {max_steps: 7, learning_rate: 1.0e-5}\n"
    )
    settings = GatewaySettings(database_url=database_url, redis_url=redis_url, run_defaults=defaults)
    async with gateway_client(settings) as api:
        plain = (await api.post("/v1/runs", json={"name": "plain"})).json()["config"]
        assert plain["model"] == "pop/tiny" and plain["trainer"]["max_steps"] == 7
        assert plain["selfplay"]["group_size"] == 6
        yaml_body = "selfplay: {task_mix: {instruction_following: 1}}\ntrainer: {max_steps: 2}\n"
        own = await api.post("/v1/runs", content=yaml_body, headers={"content-type": "application/yaml"})
        config = own.json()["config"]
        assert config["trainer"]["max_steps"] == 2 and config["trainer"]["learning_rate"] == 1.0e-5
        assert config["selfplay"]["task_mix"] == {"instruction_following": 1.0}  # replaced, not mixed
        assert config["selfplay"]["group_size"] == 6
        assert_problem(await api.post("/v1/runs", content=b"[1, 2]"), 400)

    defaults.write_text("trainer: {max_steps: 0}\n")
    with pytest.raises(ValidationError, match="max_steps"):
        create_app(settings)  # a broken defaults file stops the gateway at start
