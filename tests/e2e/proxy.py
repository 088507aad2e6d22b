"""A recording reverse proxy: it forwards every request to an upstream unchanged and keeps the
chat-completion bodies, so a test can assert on the prompts the services actually sent."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cli.stack import free_port


@dataclass
class Recorded:
    prefix: str
    """The path segment before /v1 (e.g. "teacher"), or "" for the plain route."""
    authorization: str
    body: dict[str, Any]

    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))

    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages())


@dataclass
class RecordingProxy:
    upstream: str
    port: int = field(default_factory=free_port)
    recorded: list[Recorded] = field(default_factory=list)
    _server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: Request) -> Response:
        path = request.url.path
        prefix, _, rest = path.lstrip("/").partition("v1/")
        upstream_path = f"/v1/{rest}" if _ else path
        body = await request.body()
        if upstream_path.endswith("/chat/completions"):
            import json

            self.recorded.append(
                Recorded(prefix.strip("/"), request.headers.get("authorization", ""), json.loads(body))
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=600) as client:
            reply = await client.request(
                request.method, upstream_path, content=body, headers=headers, params=request.query_params
            )
        drop = ("content-length", "content-encoding", "transfer-encoding")
        return Response(
            reply.content, reply.status_code, {k: v for k, v in reply.headers.items() if k.lower() not in drop}
        )

    def start(self) -> RecordingProxy:
        methods = ["GET", "POST", "PUT", "DELETE"]
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("recording proxy did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
