"""Admission: whether this replica takes inference work now.

A replica of a fleet (``POP_GENERATOR_WAIT_FOR_FLEET=true``) starts without it: until the gateway has
brought it to the fleet's version (a swap) or found it already there (``PUT /v1/policy/admission``),
generation requests get 503 with ``Retry-After``, and a client of the fleet moves them to another
replica. A replica that failed a swap the rest of the fleet made loses it the same way. Everything
else (``/v1/models``, health, metrics) is always answered.
"""

from __future__ import annotations

import json
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

GENERATION = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/invocations"})
REFUSAL = json.dumps({
    "type": "about:blank",
    "title": "Replica not admitted",
    "status": 503,
    "detail": "this replica is being brought to the fleet's policy version; send the request to another replica "
    "or retry shortly",
}).encode()  # fmt: skip


class Admits(Protocol):
    admitted: bool


class AdmissionGate:
    """ASGI middleware on the inference port: generation answers 503 while the replica is not admitted."""

    def __init__(self, app: ASGIApp, swapper: Admits) -> None:
        self.app, self.swapper = app, swapper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.swapper.admitted or scope["type"] != "http" or scope["path"] not in GENERATION:
            await self.app(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(REFUSAL)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": REFUSAL})
