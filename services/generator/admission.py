"""Admission: whether this replica takes inference work now.

A replica of a fleet (``POP_GENERATOR_WAIT_FOR_FLEET=true``) starts without it: until the gateway has
brought it to the fleet's version (a swap) or found it already there, generation requests get 503
with ``Retry-After``, and a producer moves them to another replica. A replica that failed a swap the
rest of the fleet made loses it the same way. Reads (``/v1/models``, health) are always answered.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)
GENERATION = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"})


class Admission:
    """The replica's admission flag, changed by the gateway (admin port) and by every successful swap."""

    def __init__(self, admitted: bool) -> None:
        self.admitted = admitted

    def set(self, admitted: bool, why: str) -> None:
        if admitted != self.admitted:
            log.info("%s inference work: %s", "taking" if admitted else "refusing", why)
        self.admitted = admitted


class AdmissionGate:
    """ASGI middleware on the inference port: generation answers 503 while the replica is not admitted."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.admission.admitted or scope["type"] != "http" or scope["path"] not in GENERATION:
            await self.app(scope, receive, send)
            return
        body = json.dumps({
            "type": "about:blank",
            "title": "Replica not admitted",
            "status": 503,
            "detail": "this replica is being brought to the fleet's policy version; send the request to another "
            "replica or retry shortly",
        }).encode()  # fmt: skip
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
