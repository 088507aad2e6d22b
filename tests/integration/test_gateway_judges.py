"""The judges registry, against real judge processes: register by URL (health-checked), list, check
again, remove; a run config naming a registered judge gets its URL."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.test_gateway_api import assert_problem
from tests.processes import minimal_judge


async def test_register_check_list_and_remove_a_judge(api: httpx.AsyncClient, minimal_judge_url: str):
    registered = await api.post(
        "/v1/judges", json={"name": "minimal", "url": minimal_judge_url + "/", "description": "conformance judge"}
    )
    assert registered.status_code == 201, registered.text
    judge = registered.json()
    assert judge["url"] == minimal_judge_url and judge["healthy"] is True and judge["schema_version"]
    assert_problem(await api.post("/v1/judges", json={"name": "minimal", "url": minimal_judge_url}), 409)

    listed = (await api.get("/v1/judges")).json()
    assert [j["name"] for j in listed] == ["minimal"]
    assert (await api.get("/v1/judges/minimal")).json()["description"] == "conformance judge"
    checked = (await api.post("/v1/judges/minimal/health")).json()
    assert checked["healthy"] is True and checked["checked_at"] >= judge["checked_at"]

    run = (await api.post("/v1/runs", json={"model": "pop/tiny", "judge": {"name": "minimal"}})).json()
    assert run["config"]["judge"]["url"] == minimal_judge_url
    mismatch = {"model": "pop/tiny", "judge": {"name": "minimal", "url": "http://elsewhere:1"}}
    problem = assert_problem(await api.post("/v1/runs", json=mismatch), 422)
    assert problem["errors"][0]["loc"] == ["judge", "url"]

    assert (await api.delete("/v1/judges/minimal")).status_code == 204
    for response in (
        await api.get("/v1/judges/minimal"),
        await api.post("/v1/judges/minimal/health"),
        await api.delete("/v1/judges/minimal"),
    ):
        assert_problem(response, 404)


async def test_a_judge_that_goes_down_is_reported_unhealthy(api: httpx.AsyncClient, tmp_path: Path):
    with minimal_judge(tmp_path) as url:
        assert (await api.post("/v1/judges", json={"name": "flaky", "url": url})).status_code == 201
    down = (await api.post("/v1/judges/flaky/health")).json()
    assert down["healthy"] is False and url in down["error"]
    assert (await api.get("/v1/judges/flaky")).json()["healthy"] is False


async def test_unusable_judges_are_not_registered(api: httpx.AsyncClient, tmp_path: Path):
    dead = assert_problem(await api.post("/v1/judges", json={"name": "dead", "url": "http://127.0.0.1:9"}), 422)
    assert dead["title"] == "Judge unusable"
    with minimal_judge(tmp_path, schema_version="0.0-old") as url:
        old = assert_problem(await api.post("/v1/judges", json={"name": "old", "url": url}), 422)
    assert "0.0-old" in str(old["detail"])
    assert_problem(await api.post("/v1/judges", json={"name": "Bad Name", "url": "http://127.0.0.1:9"}), 422)
    assert_problem(await api.post("/v1/judges", json={"name": "noscheme", "url": "127.0.0.1:9"}), 422)
    assert (await api.get("/v1/judges")).json() == []


async def test_judges_and_teachers_off_the_allowlist_are_refused(api: httpx.AsyncClient):
    """No run config or registration makes the system call a host the deployment did not allow (SSRF)."""
    for url in ("http://169.254.169.254", "http://postgres:5432", "http://localhost:8100"):
        problem = assert_problem(await api.post("/v1/judges", json={"name": "ssrf", "url": url}), 422)
        assert "POP_GATEWAY_ALLOWED_HOSTS" in str(problem["detail"])
        problem = assert_problem(await api.post("/v1/runs", json={"judge": {"url": url}}), 422)
        assert problem["errors"][0]["loc"] == ["judge", "url"]
        teacher = {"roles": {"scorer": {"base_url": f"{url}/v1", "model": "big"}}}
        problem = assert_problem(await api.post("/v1/runs", json=teacher), 422)
        assert problem["errors"][0]["loc"] == ["roles", "scorer", "base_url"]
    assert (await api.get("/v1/judges")).json() == [] and (await api.get("/v1/runs")).json()["total"] == 0
