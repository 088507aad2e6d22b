"""Teacher endpoints named in a grade request: refused where not allowed, keys read from the judge's env."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.judge.app import create_app
from shared.settings import JudgeSettings

REQUEST = {
    "document": "Insulin lowers blood sugar.",
    "task": "What lowers blood sugar?",
    "answers": ["insulin", "glucagon"],
    "rubric_writer": {"base_url": "http://teacher.invalid/v1", "model": "big", "api_key_env": "POP_TEST_NO_SUCH_KEY"},
}


async def client(allow: bool) -> AsyncIterator[httpx.AsyncClient]:
    settings = JudgeSettings(
        llm_base_url="http://127.0.0.1:9/v1", allow_request_endpoints=allow, allowed_hosts=["teacher.invalid"]
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://judge") as c:
        yield c


@pytest.fixture
async def strict() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client(allow=False):
        yield c


@pytest.fixture
async def open_judge() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client(allow=True):
        yield c


async def test_a_judge_that_disallows_teachers_says_so(strict: httpx.AsyncClient):
    reply = await strict.post("/v1/grade", json=REQUEST)
    assert reply.status_code == 403 and reply.headers["content-type"].startswith("application/problem+json")
    assert "teacher.invalid" in reply.json()["detail"]


async def test_an_unset_key_variable_is_named(open_judge: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("POP_TEST_NO_SUCH_KEY", raising=False)
    reply = await open_judge.post("/v1/grade", json=REQUEST)
    assert reply.status_code == 422 and "POP_TEST_NO_SUCH_KEY" in reply.json()["detail"]


async def test_keys_never_travel_in_requests(open_judge: httpx.AsyncClient):
    bad = {**REQUEST, "rubric_writer": {**REQUEST["rubric_writer"], "api_key": "sk-123"}}  # type: ignore[dict-item]
    reply = await open_judge.post("/v1/grade", json=bad)
    assert reply.status_code == 422 and "api_key" in reply.text


@pytest.mark.parametrize("url", ["http://169.254.169.254/v1", "http://redis:6379/v1", "http://teacher.invalid.evil/v1"])
async def test_teachers_on_hosts_off_the_allowlist_are_never_called(open_judge: httpx.AsyncClient, url: str):
    request = {**{k: v for k, v in REQUEST.items() if k != "rubric_writer"}, "scorer": {"base_url": url, "model": "m"}}
    reply = await open_judge.post("/v1/grade", json=request)
    assert reply.status_code == 403 and "POP_JUDGE_ALLOWED_HOSTS" in reply.json()["detail"]
