"""Hostile bodies at the gateway's and the judge's HTTP boundaries: each gets a clear 4xx problem body,
never a 500, and nothing is half-created."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.judge.app import create_app as judge_app
from shared.settings import JudgeSettings
from tests.integration.test_gateway_api import assert_problem

JSON = {"content-type": "application/json"}
YAML = {"content-type": "application/yaml"}
DEEP_JSON = b"[" * 20_000 + b"]" * 20_000  # far past any parser's recursion limit, under the size limit


@pytest.fixture
async def judge() -> AsyncIterator[httpx.AsyncClient]:
    app = judge_app(JudgeSettings(llm_base_url="http://127.0.0.1:9/v1", max_body_bytes=64 * 1024))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://j") as c:
        yield c


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    """A body without content-length: the limit must count it as it streams."""
    for i in range(0, len(body), 65536):
        yield body[i : i + 65536]


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/runs/claim", "/v1/judges", "/v1/tokens"])
async def test_the_gateway_refuses_hostile_bodies(api: httpx.AsyncClient, path: str):
    assert_problem(await api.post(path, content=b'{"name": "\xff\xfe"}', headers=JSON), 400)
    assert_problem(await api.post(path, content=DEEP_JSON, headers=JSON), 400)
    big = b'{"name": "' + b"x" * (2 << 20) + b'"}'
    assert "limited to" in str(assert_problem(await api.post(path, content=big, headers=JSON), 413)["detail"])
    assert_problem(await api.post(path, content=chunked(big), headers=JSON), 413)
    assert_problem(await api.post(path, content=b"[1]", headers=JSON), 422 if path != "/v1/runs" else 400)


async def test_run_configs_in_yaml_cannot_bomb_the_parser(api: httpx.AsyncClient):
    assert_problem(await api.post("/v1/runs", content=b"a: " + b"[" * 20_000, headers=YAML), 400)
    bomb = b'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n' + b"c: [*b,*b,*b]\n"
    assert_problem(await api.post("/v1/runs", content=bomb, headers=YAML), 422)  # unknown keys a, b, c
    criteria = [{"name": f"c{i}", "check": {"type": "word_count", "max_words": 5}} for i in range(500)]
    problem = assert_problem(await api.post("/v1/runs", json={"judge": {"extra_criteria": criteria}}), 422)
    assert "extra_criteria" in str(problem["detail"])
    assert (await api.get("/v1/runs")).json()["total"] == 0


async def test_the_judge_refuses_hostile_bodies(judge: httpx.AsyncClient):
    base = {"document": "d", "task": "t", "answers": ["a"]}
    assert_problem(await judge.post("/v1/grade", content=b'{"task": "\xff"}', headers=JSON), 400)
    assert_problem(await judge.post("/v1/grade", content=DEEP_JSON, headers=JSON), 400)
    assert_problem(await judge.post("/v1/grade", json={**base, "document": "x" * 100_000}), 413)
    huge = {**base, "rubric": {"criteria": [{"name": f"c{i}"} for i in range(65)]}}
    assert "criteria" in str(assert_problem(await judge.post("/v1/grade", json=huge), 422)["detail"])
    assert "answers" in str(assert_problem(await judge.post("/v1/grade", json={**base, "answers": []}), 422)["detail"])
    long_name = {**base, "rubric": {"criteria": [{"name": "n" * 500}]}}
    assert_problem(await judge.post("/v1/grade", json=long_name), 422)
