"""Checkpoints and the generator through the gateway, against the real vLLM generator (tiny model):
read a manifest, promote a version, roll back, and every refusal on the way."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from shared.db import Database, EvalRecord
from shared.evaluation.api import CheckpointTarget, EvalCreate, EvalSet
from shared.files import sha256_file
from shared.modeling import resolve_model
from shared.settings import GatewaySettings
from tests.integration.conftest import gateway_client
from tests.integration.test_gateway_api import assert_problem, step_report


@pytest.fixture
async def api_live(tmp_path: Path, redis_url: str, tiny_generator_admin: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        generator_url=tiny_generator_admin,
        redis_url=redis_url,
    )
    async with gateway_client(settings) as client:
        yield client


async def run_with_checkpoints(api: httpx.AsyncClient, root: Path, versions: int) -> str:
    """A run whose trainer reported ``versions`` steps, each with a real full-weight checkpoint on disk
    (the tiny model's own weights: what matters here is that vLLM loads them)."""
    run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
    await api.post("/v1/runs/claim", json={"trainer": "t0"})
    for version in range(1, versions + 1):
        path = root / run_id / f"v{version:06d}"
        shutil.copytree(resolve_model("pop/tiny"), path)
        report = step_report(run_id, version, 0.1 * version)
        report["checkpoint_path"] = str(path)
        report["manifest"]["files"] = {"model.safetensors": sha256_file(path / "model.safetensors")}  # type: ignore[index]
        assert (await api.post(f"/v1/runs/{run_id}/steps", json=report)).status_code == 200
    return str(run_id)


async def test_manifest_promote_and_rollback_on_the_real_generator(
    api_live: httpx.AsyncClient, tiny_generator_checkpoints: Path
):
    api, root = api_live, tiny_generator_checkpoints
    run_id = await run_with_checkpoints(api, root, versions=3)

    manifest = (await api.get(f"/v1/runs/{run_id}/checkpoints/2")).json()
    assert manifest["version"] == 2 and manifest["manifest"]["files"]["model.safetensors"]
    assert_problem(await api.get(f"/v1/runs/{run_id}/checkpoints/9"), 404)
    assert_problem(await api.get("/v1/runs/nope/checkpoints/1"), 404)
    assert_problem(await api.get(f"/v1/runs/{run_id}/checkpoints/two"), 422)

    promoted = await api.post(f"/v1/runs/{run_id}/checkpoints/3/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["served"] == {**promoted.json()["served"], "version": 3, "run_id": run_id}
    status = (await api.get("/v1/generator")).json()
    assert status["healthy"] and status["ready"] and status["served"]["version"] == 3

    # A run still training would swap forward again at its next update: pause it first.
    assert_problem(await api.post(f"/v1/runs/{run_id}/rollback", json={}), 409)
    await api.post(f"/v1/runs/{run_id}/pause")
    back = await api.post(f"/v1/runs/{run_id}/rollback", json={})  # the one before the served v3
    assert back.status_code == 200 and back.json()["served"]["version"] == 2
    explicit = await api.post(f"/v1/runs/{run_id}/rollback", json={"version": 0})  # its base model
    assert explicit.json()["served"]["version"] == 0
    assert (await api.get("/v1/generator/weights")).json()["version"] == 0

    problem = assert_problem(await api.post(f"/v1/runs/{run_id}/rollback", json={}), 409)
    assert "name the version" in str(problem["detail"])  # v0 served: nothing earlier
    assert_problem(await api.post(f"/v1/runs/{run_id}/rollback", json={"version": 3}), 409)  # not earlier
    assert_problem(await api.post(f"/v1/runs/{run_id}/rollback", json={"version": -1}), 422)
    assert_problem(await api.post("/v1/runs/nope/rollback", json={}), 404)

    # The generator refuses a checkpoint whose file changed after its manifest was written; v0 keeps serving.
    (root / run_id / "v000001" / "model.safetensors").write_bytes(b"corrupt")
    refused = assert_problem(await api.post(f"/v1/runs/{run_id}/checkpoints/1/promote"), 400)
    assert "checksum" in str(refused["detail"]).lower() or "sha256" in str(refused["detail"]).lower()
    assert (await api.get("/v1/generator/weights")).json()["version"] == 0
    assert_problem(await api.post(f"/v1/runs/{run_id}/checkpoints/7/promote"), 404)
    assert_problem(await api.post(f"/v1/runs/{run_id}/checkpoints/-1/promote"), 422)


async def test_generator_down(api: httpx.AsyncClient, tmp_path: Path):
    status = await api.get("/v1/generator")
    assert status.status_code == 200
    body = status.json()
    assert body["healthy"] is False and body["ready"] is False and body["served"] is None and body["error"]
    run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
    assert_problem(await api.post(f"/v1/runs/{run_id}/checkpoints/0/promote"), 503)
    await api.post(f"/v1/runs/{run_id}/stop")
    assert_problem(await api.post(f"/v1/runs/{run_id}/rollback", json={}), 503)
    assert_problem(await api.post("/v1/generator/weights", json={"run_id": run_id, "version": 0}), 503)


@pytest.fixture
def silent_peer() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a generator stuck mid-swap."""
    server = socket.create_server(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


async def test_a_swap_answered_late_is_504_and_answered_wrong_is_502(
    tmp_path: Path, redis_url: str, silent_peer: str, minimal_judge_url: str
):
    for generator_url, status in ((silent_peer, 504), (minimal_judge_url, 502)):  # the judge has no swap route
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway-{status}.db",
            generator_url=generator_url,
            redis_url=redis_url,
            swap_timeout_s=1.0,
        )
        async with gateway_client(settings) as api:
            run_id = (await api.post("/v1/runs", json={"model": "pop/tiny"})).json()["id"]
            assert_problem(await api.post(f"/v1/runs/{run_id}/checkpoints/0/promote"), status)
            assert_problem(await api.post("/v1/generator/weights", json={"run_id": run_id, "version": 0}), status)


async def test_pruning_refuses_what_the_generator_serves_or_an_unfinished_eval_names(
    api_live: httpx.AsyncClient, tiny_generator_checkpoints: Path, tmp_path: Path
):
    """The trainer's keep_last asks the gateway before it deletes a version's folder."""
    api = api_live
    run_id = await run_with_checkpoints(api, tiny_generator_checkpoints, versions=3)
    try:
        assert (await api.post(f"/v1/runs/{run_id}/checkpoints/3/promote")).status_code == 200
        held = assert_problem(await api.delete(f"/v1/runs/{run_id}/checkpoints/3"), 409)
        assert "generator" in str(held["detail"])
        request = EvalCreate(
            set=EvalSet(format="ifeval"),
            targets=[CheckpointTarget(run_id=run_id, version=2)],
        )
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/gateway.db")  # the gateway's own database
        async with db.session() as session:
            session.add(EvalRecord(id="pinning-eval", run_id=run_id, request=request.model_dump(mode="json")))
            await session.commit()
        await db.dispose()
        named = assert_problem(await api.delete(f"/v1/runs/{run_id}/checkpoints/2"), 409)
        assert "eval pinning-eval" in str(named["detail"])
        assert (await api.delete(f"/v1/runs/{run_id}/checkpoints/1")).status_code == 204
        assert [c["version"] for c in (await api.get(f"/v1/runs/{run_id}/checkpoints")).json()] == [2, 3]
        assert_problem(await api.delete(f"/v1/runs/{run_id}/checkpoints/1"), 404)
    finally:
        await api.post(f"/v1/runs/{run_id}/checkpoints/0/promote")
