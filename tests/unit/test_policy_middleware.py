"""The inference port's middleware: each generate request is salted with the version that admits it
(a client's own salt kept), the policy name follows the served adapter, and every response names the
versions it spans. An echoing ASGI app stands in for vLLM's (the real one: tests/integration)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from services.generator.server import PolicyMiddleware
from services.generator.swap import MAX_SALT, combined_salt
from shared.schemas import PolicyVersion


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    swapper.current = PolicyVersion(version=4, run_id="r", model="policy")  # a swap lands mid-request
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body or b"{}"})


swapper: Any = SimpleNamespace(served_name="policy", adapter=None, cache_salt="pop-r-v3-s1", current=None)


async def post(path: str, body: dict[str, Any], adapter: str | None = None) -> httpx.Response:
    swapper.current, swapper.adapter = PolicyVersion(version=3, run_id="r", model="policy"), adapter
    transport = httpx.ASGITransport(app=PolicyMiddleware(echo, swapper))
    async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
        return await client.post(path, content=json.dumps(body))


async def test_a_chat_request_is_salted_and_its_response_spans_the_swap():
    reply = await post("/v1/chat/completions", {"model": "policy", "cache_salt": "user-1"})
    assert reply.json() == {"model": "policy", "cache_salt": "user-1|pop-r-v3-s1"}
    assert (reply.headers["X-Policy-Version-Start"], reply.headers["X-Policy-Version"]) == ("3", "4")
    assert reply.headers["X-Policy-Run"] == "r"


async def test_the_adapter_serves_the_policy_name_and_other_routes_pass_untouched():
    reply = await post("/v1/completions", {"model": "policy"}, adapter="policy-r-v3")
    assert reply.json() == {"model": "policy-r-v3", "cache_salt": "pop-r-v3-s1"}
    untouched = await post("/tokenize", {"model": "policy"}, adapter="policy-r-v3")
    assert untouched.json() == {"model": "policy"} and untouched.headers["X-Policy-Version"] == "4"


def test_a_long_user_salt_keeps_a_digest_and_an_invalid_one_is_left_for_vllm_to_refuse():
    long = combined_salt("u" * 120, "pop-r-v3-s1")
    assert isinstance(long, str) and len(long) <= MAX_SALT and long.endswith("|pop-r-v3-s1")
    assert combined_salt("a/b", "pop") == "a/b" and combined_salt(5, "pop") == 5
    assert combined_salt(None, "pop") == "pop"
