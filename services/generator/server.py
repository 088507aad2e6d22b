"""vLLM's own OpenAI-compatible app on the inference port, and our admin app on its own port, in one process.

We mirror vLLM's ``build_and_serve`` (pinned vLLM version) so the engine client is in hand to pause,
reload and resume it directly: the weight-reload RPC is never exposed over HTTP. The inference port
serves vLLM's routes, ``/healthz`` and ``/readyz``, and nothing that controls the server: our policy
routes live on the admin port (services/generator/admin.py), and of vLLM's control routes, 0.32's
``build_app`` mounts the dev ones (``/pause``, ``/resume``, ``/collective_rpc``, ``/reset_prefix_cache``,
``/sleep``, ``/wake_up``, the RL weight-transfer routes ``/update_weights`` ...) only under
``VLLM_SERVER_DEV_MODE=1``, which we never set (a user who sets it gets them, knowingly), the LoRA load
routes only under ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``, the profiler's only with a profiler configured,
and the elastic-EP scaling routes always: those we remove.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.generator.admin import create_admin_app, probes
from services.generator.admission import AdmissionGate
from services.generator.swap import WeightSwapper, combined_salt

log = logging.getLogger(__name__)

VERSION_HEADER, START_HEADER, RUN_HEADER = "X-Policy-Version", "X-Policy-Version-Start", "X-Policy-Run"
RUN_START_HEADER = "X-Policy-Run-Start"
"""On every inference response: the version serving when its headers were sent, the one serving when
the request arrived, and the runs whose weights those were (empty for a base model served for no run).
Tokens of a response came from the weights between the two; equal values mean one version wrote all of
them, and different runs mean the answer is not one run's policy."""
SALTED = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses"})
"""The generate routes whose bodies take ``cache_salt`` (and ``model``, for the LoRA alias)."""
ALIASED = frozenset({"/v1/chat/completions", "/v1/completions"})
CONTROL_ROUTES = frozenset({"/scale_elastic_ep", "/is_scaling_elastic_ep"})
"""vLLM control routes ``build_app`` mounts unconditionally in 0.32 (data-parallel rescaling)."""


class PolicyMiddleware:
    """Every inference request is tied to the version that admits it.

    Its body gets that version's ``cache_salt`` (joined to a client's own), so its prefix-cache hits come
    only from blocks its version's weights computed; in LoRA mode a request naming the policy is routed
    to the adapter serving now (clients always ask for the served model name); and its response carries
    the version headers.
    """

    def __init__(self, app: ASGIApp, swapper: WeightSwapper) -> None:
        self.app, self.swapper = app, swapper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, start_run = self.swapper.current.version, self.swapper.current.run_id
        if scope["method"] == "POST" and scope["path"] in SALTED:
            scope, receive = await self._rewrite(scope, receive)

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                served = self.swapper.current
                headers = [
                    (VERSION_HEADER.lower().encode(), str(served.version).encode()),
                    (START_HEADER.lower().encode(), str(start).encode()),
                    (RUN_HEADER.lower().encode(), (served.run_id or "").encode()),
                    (RUN_START_HEADER.lower().encode(), (start_run or "").encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, stamped)

    async def _rewrite(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return scope, _replay(b"", receive, first=message)
            body, more = body + message.get("body", b""), message.get("more_body", False)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data["cache_salt"] = combined_salt(data.get("cache_salt"), self.swapper.cache_salt)
            adapter = self.swapper.adapter
            if adapter is not None and scope["path"] in ALIASED and data.get("model") == self.swapper.served_name:
                data["model"] = adapter
            body = json.dumps(data).encode()
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        return scope, _replay(body, receive)


def _replay(body: bytes, receive: Receive, first: Message | None = None) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return first if first is not None else {"type": "http.request", "body": body, "more_body": False}

    return replay


def without_control_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    return [r for r in routes if getattr(r, "path", None) not in CONTROL_ROUTES]


def add_inference_routes(app: FastAPI, swapper: WeightSwapper) -> None:
    """Our probes beside vLLM's routes, its control routes gone, and the version middleware outermost."""
    app.state.swapper = swapper
    app.router.routes = without_control_routes(app.router.routes)
    app.include_router(probes)
    # vLLM's build_app has already built the middleware stack; drop it so Starlette rebuilds it,
    # with ours outermost, on the first request.
    app.middleware_stack = None
    app.add_middleware(AdmissionGate, swapper=swapper)
    app.add_middleware(PolicyMiddleware, swapper=swapper)


@dataclass(frozen=True)
class AdminOptions:
    host: str
    port: int
    token: str | None = None


def _admin_socket(options: AdminOptions) -> socket.socket:
    """Bound before the engine starts, so a port in use fails the start at once, not after the model loads."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((options.host, options.port))
    return sock


async def _start_admin(app: FastAPI, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    from vllm.entrypoints.launchers.launcher import NoSignalServer

    server = NoSignalServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # the admin port answers before the inference port does
        if task.done():
            task.result()
            raise RuntimeError("the admin server stopped while starting")
        await asyncio.sleep(0.05)
    return server, task


async def serve(
    args: Namespace,
    base_model_path: str,
    swap_timeout_s: float,
    roots: Sequence[Path] = (),
    admin: AdminOptions | None = None,
    max_lora_rank: int = 16,
    admitted: bool = True,
) -> None:
    from vllm import envs
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.launcher import serve_http, setup_server

    admin = admin or AdminOptions(args.host or "127.0.0.1", 8001)
    admin_sock = _admin_socket(admin)
    _, sock = setup_server(args, reuse_port=False)
    async with build_async_engine_client(args) as engine_client:
        supported_tasks = await engine_client.get_supported_tasks()
        app = build_app(args, supported_tasks, engine_client.model_config)
        served_name = args.served_model_name[0] if args.served_model_name else args.model
        swapper = WeightSwapper(engine_client, base_model_path, served_name, swap_timeout_s, roots, max_lora_rank)
        swapper.admitted = admitted
        add_inference_routes(app, swapper)
        await init_app_state(engine_client, app.state, args, supported_tasks)
        swapper.models = app.state.openai_serving_models
        admin_app = create_admin_app(swapper, admin.token, weight_transfer=args.weight_transfer_config is not None)
        admin_server, admin_task = await _start_admin(admin_app, admin_sock)
        log.info("admin routes on %s:%d, inference on %s:%d", admin.host, admin.port, args.host, args.port)
        try:
            shutdown_task = await serve_http(
                app,
                sock=sock,
                host=args.host,
                port=args.port,
                log_level=args.uvicorn_log_level,
                access_log=not args.disable_uvicorn_access_log,
                timeout_keep_alive=envs.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
            )
        finally:
            admin_server.should_exit = True
            await asyncio.gather(admin_task, return_exceptions=True)
    try:
        await shutdown_task
    finally:
        sock.close()
        admin_sock.close()
