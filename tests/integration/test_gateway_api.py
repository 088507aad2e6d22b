"""The gateway's REST API on real SQL: SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from shared.schemas import CheckpointManifest
from shared.settings import GatewaySettings
from shared.streams import EpisodeStream
from shared.synthesis import SynthesisLedger
from tests.integration.conftest import gateway_client
from tests.integration.samples import group


def manifest(run_id: str, version: int) -> dict[str, object]:
    m = CheckpointManifest(run_id=run_id, version=version, step=version, base_model="pop/tiny", files={})
    return m.model_dump(mode="json")


def step_report(run_id: str, step: int, score: float) -> dict[str, object]:
    return {
        "step": step,
        "policy_version": step,
        "mean_score": score,
        "metrics": {"loss": 0.5},
        "checkpoint_path": f"/ckpt/{run_id}/v{step:06d}",
        "manifest": manifest(run_id, step),
    }


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return body


async def test_create_run_from_json_and_yaml(api: httpx.AsyncClient):
    created = await api.post("/v1/runs", json={"name": "json-run", "model": "pop/tiny"})
    assert created.status_code == 201
    run = created.json()
    assert run["status"] == "pending" and run["step"] == 0 and run["config"]["trainer"]["algorithm"]["name"] == "dpo"

    yaml_body = "name: yaml-run\nmodel: pop/tiny\ntrainer:\n  algorithm: {name: grpo, clip_eps: 0.3}\n"
    created = await api.post("/v1/runs", content=yaml_body, headers={"content-type": "application/yaml"})
    assert created.status_code == 201
    assert created.json()["config"]["trainer"]["algorithm"] == {
        "name": "grpo",
        "clip_eps": 0.3,
        "scale_rewards": True,
        "loss_type": "grpo",
        "kl_beta": 0.0,
    }

    listed = (await api.get("/v1/runs", params={"status": "pending"})).json()
    assert listed["total"] == 2 and {r["name"] for r in listed["items"]} == {"json-run", "yaml-run"}


async def test_bad_run_configs_name_the_field(api: httpx.AsyncClient):
    body = assert_problem(await api.post("/v1/runs", json={"trainer": {"max_steps": 0}}), 422)
    assert "trainer.max_steps" in str(body["detail"])
    body = assert_problem(await api.post("/v1/runs", json={"trainer": {"algorithm": {"name": "ppo"}}}), 422)
    assert "algorithm" in str(body["detail"])
    body = assert_problem(await api.post("/v1/runs", json={"typo_field": 1}), 422)
    assert "typo_field" in str(body["detail"])
    bad_yaml = await api.post("/v1/runs", content="a: [1, 2", headers={"content-type": "application/yaml"})
    assert_problem(bad_yaml, 400)
    assert_problem(await api.post("/v1/runs", content=b"{nope"), 400)
    assert_problem(await api.get("/v1/runs", params={"limit": 0}), 422)
    assert (await api.get("/v1/runs")).json()["total"] == 0  # nothing half-created


async def test_trainer_lifecycle_claim_steps_finish(api: httpx.AsyncClient):
    run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
    claimed = await api.post("/v1/runs/claim", json={"trainer": "t0"})
    assert claimed.status_code == 200 and claimed.json()["id"] == run_id and claimed.json()["status"] == "running"
    assert (await api.post("/v1/runs/claim", json={"trainer": "t1"})).status_code == 204
    # the same trainer, restarted, gets its running run back to resume it
    assert (await api.post("/v1/runs/claim", json={"trainer": "t0"})).json()["id"] == run_id

    for step, score in [(1, 0.5), (2, 1.0)]:
        r = await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, step, score))
        assert r.status_code == 200, r.text
    assert_problem(await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 5, 0.1)), 409)
    again = await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 2, 1.0))  # a retried report
    assert again.status_code == 200 and again.json()["step"] == 2 and len(again.json()["steps"]) == 2

    run = (await api.get(f"/v1/runs/{run_id}")).json()
    assert run["step"] == 2 and run["policy_version"] == 2
    assert [s["mean_score"] for s in run["steps"]] == [0.5, 1.0]
    assert run["recent_mean_score"] == pytest.approx(0.75)
    assert run["served_version"] is None  # generator down: state still readable
    checkpoints = (await api.get(f"/v1/runs/{run_id}/checkpoints")).json()
    assert [c["version"] for c in checkpoints] == [1, 2]

    done = await api.post(f"/v1/runs/{run_id}/finish", json={"status": "completed"})
    assert done.json()["status"] == "completed"
    assert_problem(await api.post(f"/v1/runs/{run_id}/stop"), 409)
    assert_problem(await api.post(f"/v1/runs/{run_id}/steps", json=step_report(run_id, 3, 0.1)), 409)


async def test_unknown_run_and_checkpoint_are_404(api: httpx.AsyncClient):
    assert_problem(await api.get("/v1/runs/nope"), 404)
    assert_problem(await api.get("/v1/runs/nope/checkpoints"), 404)
    assert_problem(await api.post("/v1/generator/weights", json={"run_id": "nope", "version": 1}), 404)
    run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
    assert_problem(await api.post("/v1/generator/weights", json={"run_id": run_id, "version": 7}), 404)
    assert_problem(await api.post("/v1/generator/weights", json={"run_id": run_id, "version": -1}), 422)


async def test_generator_down_is_503_with_a_problem_body(api: httpx.AsyncClient):
    assert_problem(await api.get("/v1/generator/weights"), 503)


ROUTES = {
    "/v1/runs": {"get", "post"},
    "/v1/runs/{run_id}": {"get", "delete"},
    "/v1/runs/{run_id}/pause": {"post"},
    "/v1/runs/{run_id}/resume": {"post"},
    "/v1/runs/{run_id}/stop": {"post"},
    "/v1/runs/claim": {"post"},
    "/v1/runs/{run_id}/steps": {"post"},
    "/v1/runs/{run_id}/finish": {"post"},
    "/v1/runs/{run_id}/rewind": {"post"},
    "/v1/runs/{run_id}/metrics": {"get"},
    "/v1/runs/{run_id}/episodes": {"get"},
    "/v1/runs/{run_id}/synthesis": {"get"},
    "/v1/runs/{run_id}/checkpoints": {"get"},
    "/v1/runs/{run_id}/checkpoints/{version}": {"get", "delete"},
    "/v1/runs/{run_id}/checkpoints/{version}/promote": {"post"},
    "/v1/runs/{run_id}/rollback": {"post"},
    "/v1/generator": {"get"},
    "/v1/generator/weights": {"get", "post"},
    "/v1/judges": {"get", "post"},
    "/v1/judges/{name}": {"get", "delete"},
    "/v1/judges/{name}/health": {"post"},
    "/v1/tokens": {"get", "post"},
    "/v1/tokens/{token_id}": {"delete"},
    "/v1/evals": {"get", "post"},
    "/v1/evals/{eval_id}": {"get", "delete"},
}


async def test_openapi_documents_every_route_and_its_problems(api: httpx.AsyncClient):
    spec = (await api.get("/openapi.json")).json()
    versioned = {path: set(ops) for path, ops in spec["paths"].items() if path.startswith("/v1")}
    assert versioned == ROUTES  # a new route is added here, with its tests
    assert "application/yaml" in spec["paths"]["/v1/runs"]["post"]["requestBody"]["content"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1"):
                assert "401" in op["responses"], (method, path)
            if ("{run_id}" in path and path != "/v1/runs/{run_id}/rollback") or "{name}" in path or "{eval_id}" in path:
                assert "404" in op["responses"], (method, path)
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    problem = answer["content"]["application/problem+json"]["schema"]
                    assert problem == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
    assert set(spec["components"]["schemas"]["Problem"]["properties"]) >= {"type", "title", "status", "detail"}


async def test_a_run_naming_an_unknown_task_type_is_refused(api: httpx.AsyncClient):
    body = {"selfplay": {"task_mix": {"long_form_qa": 1, "sonnet_battle": 2}}}
    problem = assert_problem(await api.post("/v1/runs", json=body), 422)
    assert "sonnet_battle" in str(problem["detail"]) and "long_form_qa" in str(problem["detail"])
    body = {"selfplay": {"task_mix": {"long_form_qa": 0}}}
    assert "task weights must be > 0" in str(assert_problem(await api.post("/v1/runs", json=body), 422)["detail"])
    assert (await api.get("/v1/runs")).json()["total"] == 0  # nothing half-created


async def test_synthesis_counts_and_metrics_are_exposed(api: httpx.AsyncClient, redis: Redis):
    mix = {"long_form_qa": 1, "instruction_following": 1}
    run_id = (await api.post("/v1/runs", json={"selfplay": {"task_mix": mix}})).json()["id"]
    ledger = SynthesisLedger(redis, run_id)
    for _ in range(5):
        await ledger.next_draw()
    await ledger.filtered("doc_boilerplate")
    await ledger.filtered("task_leaks_reference")
    await ledger.filtered("task_leaks_reference")
    await ledger.group_made("long_form_qa")
    await ledger.group_made("instruction_following")
    await ledger.set_gauges({"task_distinct_2_recent": 0.75})
    await api.post("/v1/runs/claim", json={"trainer": "t0"})
    report = step_report(run_id, 1, 1.25)
    report["metrics"] = {"loss": 0.5, "answer_distinct_2": 0.4, "rubric_criteria": 3.0}
    assert (await api.post(f"/v1/runs/{run_id}/steps", json=report)).status_code == 200

    synthesis = (await api.get(f"/v1/runs/{run_id}/synthesis")).json()
    assert synthesis == {
        "draws": 5,
        "groups": 2,
        "groups_by_task_type": {"long_form_qa": 1, "instruction_following": 1},
        "filtered": {"doc_boilerplate": 1, "task_leaks_reference": 2},
        "diversity": {"task_distinct_2_recent": 0.75},
    }
    assert_problem(await api.get("/v1/runs/nope/synthesis"), 404)

    metrics = await api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert f'pop_synthesis_filtered_total{{reason="task_leaks_reference",run_id="{run_id}"}} 2.0' in text
    assert f'pop_synthesis_groups_total{{run_id="{run_id}",task_type="instruction_following"}} 1.0' in text
    assert f'pop_synthesis_draws_total{{run_id="{run_id}"}} 5.0' in text
    assert f'pop_step_metric{{metric="answer_distinct_2",run_id="{run_id}"}} 0.4' in text
    assert f'pop_run_mean_score{{run_id="{run_id}"}} 1.25' in text
    assert f'pop_synthesis_diversity{{metric="task_distinct_2_recent",run_id="{run_id}"}} 0.75' in text


async def test_a_run_whose_external_judge_is_down_is_refused(api: httpx.AsyncClient):
    problem = assert_problem(await api.post("/v1/runs", json={"judge": {"url": "http://127.0.0.1:9"}}), 422)
    assert problem["title"] == "Judge unusable" and "127.0.0.1:9" in str(problem["detail"])
    assert (await api.get("/v1/runs")).json()["total"] == 0


async def test_readiness_reflects_sql_and_redis(api: httpx.AsyncClient, database_url: str, tmp_path):
    ready = await api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    dead_redis = GatewaySettings(database_url=database_url, redis_url="redis://127.0.0.1:9/0")
    async with gateway_client(dead_redis) as down:
        problem = assert_problem(await down.get("/readyz"), 503)
        assert problem["checks"]["database"] == "ok" and "redis" in str(problem["detail"])
        assert (await down.get("/healthz")).status_code == 200  # alive, just not ready


async def test_metrics_count_requests_by_route_and_queue_depth(api: httpx.AsyncClient, redis: Redis):
    run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
    await api.post("/v1/runs/claim", json={"trainer": "t0"})
    stream = EpisodeStream(redis, run_id)
    await stream.ensure_group()
    for i in range(3):
        await stream.append(group(run_id, i))
    await stream.read("t0", count=1, block_ms=10)  # one read, not yet acknowledged
    await api.get("/v1/runs/nope")
    text = (await api.get("/metrics")).text
    assert 'pop_http_requests_total{method="GET",route="/v1/runs/{run_id}",service="gateway",status="404"} 1.0' in text
    assert 'pop_http_requests_total{method="POST",route="/v1/runs",service="gateway",status="201"} 1.0' in text
    assert f'pop_stream_backlog{{run_id="{run_id}"}} 2.0' in text
    assert f'pop_stream_pending{{run_id="{run_id}"}} 1.0' in text
