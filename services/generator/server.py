"""vLLM's own OpenAI-compatible app, with the policy routes added in the same process.

We mirror vLLM's ``build_and_serve`` (pinned vLLM version) so the engine client is in hand to
pause, reload and resume it directly: the weight-reload RPC is never exposed over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.generator.swap import SwapError, WeightSwapper
from shared.problems import problem
from shared.schemas import GenerationHold, HoldRequest, PolicyVersion, SwapRequest

log = logging.getLogger(__name__)
router = APIRouter(tags=["policy"])
HEALTH_TIMEOUT_S = 5.0


def get_swapper(request: Request) -> WeightSwapper:
    swapper: WeightSwapper = request.app.state.swapper
    return swapper


Swapper = Annotated[WeightSwapper, Depends(get_swapper)]


@router.get("/v1/policy", response_model=PolicyVersion)
async def served_policy(swapper: Swapper) -> PolicyVersion:
    """The policy version this generator serves now."""
    return swapper.current


@router.post("/v1/policy/swap", response_model=PolicyVersion, responses={400: {}, 500: {}, 504: {}})
async def swap_policy(body: SwapRequest, swapper: Swapper) -> PolicyVersion | JSONResponse:
    """Load a checkpoint from disk and serve it, without a restart; the old one serves on failure."""
    try:
        return await swapper.swap(body)
    except SwapError as exc:
        return problem(exc.status, exc.title, exc.detail, served_version=swapper.current.version)


@router.post("/v1/policy/hold", response_model=GenerationHold)
async def hold_generation(body: HoldRequest, swapper: Swapper) -> GenerationHold:
    """Pause generation for a colocated trainer's update (requests wait in place), for at most ``seconds``."""
    await swapper.hold(body.seconds)
    return GenerationHold(held=True, seconds=body.seconds)


@router.delete("/v1/policy/hold", response_model=GenerationHold)
async def release_generation(swapper: Swapper) -> GenerationHold:
    """Resume generation; idempotent."""
    await swapper.release()
    return GenerationHold(held=False)


async def _engine_failure(swapper: WeightSwapper) -> str | None:
    try:
        await asyncio.wait_for(swapper.engine.check_health(), HEALTH_TIMEOUT_S)
    except Exception as exc:  # EngineDeadError, or no answer in time
        return f"{type(exc).__name__}: {exc}"
    return None


@router.get("/healthz", responses={503: {}})
async def healthz(swapper: Swapper) -> JSONResponse:
    """Alive while the engine answers its health check (vLLM's ``/health`` without the instrumentation)."""
    failure = await _engine_failure(swapper)
    if failure is not None:
        return problem(503, "Engine unhealthy", failure)
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses={503: {}})
async def ready(swapper: Swapper) -> JSONResponse:
    """Ready when the engine answers and the served weights are whole."""
    if not swapper.healthy:
        return problem(503, "Generator unhealthy", "a failed swap could not restore the old weights")
    failure = await _engine_failure(swapper)
    if failure is not None:
        return problem(503, "Engine unhealthy", failure)
    return JSONResponse({"status": "ok", "version": swapper.current.version})


class PolicyAlias:
    """LoRA mode: a request naming the policy is routed to the adapter that serves it now.

    Clients (producers, the judge, users) always ask for the served model name; which weights answer
    is the generator's business, exactly as in full-weight mode.
    """

    def __init__(self, app: ASGIApp, swapper: WeightSwapper) -> None:
        self.app, self.swapper = app, swapper

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        adapter = self.swapper.adapter
        if adapter is None or scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in ALIASED:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("model") == self.swapper.served_name:
            body = json.dumps({**data, "model": adapter}).encode()
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


ALIASED = frozenset({"/v1/chat/completions", "/v1/completions"})


def add_policy_routes(app: FastAPI, swapper: WeightSwapper) -> None:
    app.state.swapper = swapper
    app.include_router(router)
    # vLLM's build_app has already built the middleware stack; drop it so Starlette rebuilds it,
    # with ours outermost, on the first request.
    app.middleware_stack = None
    app.add_middleware(PolicyAlias, swapper=swapper)


async def serve(args: Namespace, base_model_path: str, swap_timeout_s: float, roots: Sequence[Path] = ()) -> None:
    from vllm import envs
    from vllm.entrypoints.launchers.api_server.app_state import init_app_state
    from vllm.entrypoints.launchers.api_server.entry import build_async_engine_client
    from vllm.entrypoints.launchers.app import build_app
    from vllm.entrypoints.launchers.launcher import serve_http, setup_server

    _, sock = setup_server(args, reuse_port=False)
    async with build_async_engine_client(args) as engine_client:
        supported_tasks = await engine_client.get_supported_tasks()
        app = build_app(args, supported_tasks, engine_client.model_config)
        served_name = args.served_model_name[0] if args.served_model_name else args.model
        swapper = WeightSwapper(engine_client, base_model_path, served_name, swap_timeout_s, roots)
        add_policy_routes(app, swapper)
        await init_app_state(engine_client, app.state, args, supported_tasks)
        app.state.swapper.models = app.state.openai_serving_models
        shutdown_task = await serve_http(
            app,
            sock=sock,
            host=args.host,
            port=args.port,
            log_level=args.uvicorn_log_level,
            access_log=not args.disable_uvicorn_access_log,
            timeout_keep_alive=envs.VLLM_HTTP_TIMEOUT_KEEP_ALIVE,
        )
    try:
        await shutdown_task
    finally:
        sock.close()
